"""Weekly sales report: totals per region and product from a sales CSV.

Used as a program by the build-report task and as a module by publish-report; both get
this file (and data/sales.csv) copied into their work directory through `files`.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path


def load(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def summarize(rows: list[dict[str, str]]) -> dict[str, object]:
    by_region: dict[str, Decimal] = defaultdict(Decimal)
    by_product: dict[str, int] = defaultdict(int)
    for row in rows:
        units = int(row["units"])
        by_region[row["region"]] += units * Decimal(row["unit_price"])
        by_product[row["product"]] += units
    dates = sorted(row["date"] for row in rows)
    return {
        "period": f"{dates[0]} to {dates[-1]}" if dates else "no data",
        "revenue": str(sum(by_region.values(), Decimal(0))),
        "revenue_by_region": {k: str(v) for k, v in sorted(by_region.items())},
        "units_by_product": dict(sorted(by_product.items())),
    }


def render(summary: dict[str, object], title: str) -> str:
    lines = [f"# {title}", "", f"Period: {summary['period']}", ""]
    lines += ["| Region | Revenue |", "|---|---:|"]
    regions = summary["revenue_by_region"]
    assert isinstance(regions, dict)
    lines += [f"| {region} | {amount} |" for region, amount in regions.items()]
    lines += ["", "| Product | Units |", "|---|---:|"]
    products = summary["units_by_product"]
    assert isinstance(products, dict)
    lines += [f"| {product} | {units} |" for product, units in products.items()]
    lines += ["", f"Total revenue: {summary['revenue']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[1] if len(argv) > 1 else "sales.csv")
    title = os.environ.get("REPORT_TITLE", "Sales report")
    report = render(summarize(load(source)), title)
    # The work directory holds the task's files read-only; write the report elsewhere.
    out = Path(os.environ.get("REPORT_DIR", os.environ.get("TMPDIR", "/tmp"))) / "report.md"
    out.write_text(report)
    print(report)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
