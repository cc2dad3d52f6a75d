"""The hostile declarations: the files of `hostile/`, committed, and the large ones written
by `generate` (megabytes that would only weigh down the repository), with what each must be
answered with.

Every case is answered with located errors of its own file; `tekton-task.yaml`, another
tool's `Task`, with none.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HOSTILE = Path(__file__).resolve().parent / "hostile"
HEADER = "apiVersion: reconciler.io/v1alpha1\n"
OTHER_YAML = {"tekton-task.yaml"}


def _task(name: str, body: str = "") -> str:
    return f"{HEADER}kind: Task\nmetadata:\n  name: {name}\nspec:\n  command: [run]\n{body}"


def _stack(name: str, body: str) -> str:
    return f"{HEADER}kind: Stack\nmetadata:\n  name: {name}\nspec:\n  path: stacks/none\n{body}"


def _deep_block_map(depth: int) -> str:
    lines = [f"{'  ' * (i + 2)}k{i}:" for i in range(depth)]
    return _stack("deep-block-map", "  vars:\n" + "\n".join(lines) + " end\n")


def _cycle(part: int, size: int = 3000, per_file: int = 1000) -> str:
    return "---\n".join(
        _task(f"cycle-{i}", f"  dependsOn: [task/cycle-{(i + 1) % size}]\n")
        for i in range(part * per_file, (part + 1) * per_file)
    )


GENERATED: dict[str, str] = {
    "deep-flow-seq.yaml": _stack(
        "deep-flow-seq", "  vars:\n    a: " + "[" * 30_000 + "]" * 30_000 + "\n"
    ),
    "deep-flow-map.yaml": _stack(
        "deep-flow-map", "  vars:\n    a: " + "{a: " * 1_000 + "x" + "}" * 1_000 + "\n"
    ),
    "deep-1000-cache.yaml": _stack(
        "deep-1000-cache", "  vars:\n    a: " + "[" * 1_000 + "1" + "]" * 1_000 + "\n"
    ),
    "deep-block-map.yaml": _deep_block_map(200),
    "deep-block-seq.yaml": _stack("deep-block-seq", "  varFiles:\n  " + "- " * 2_000 + "x\n"),
    "many-docs.yaml": "---\n".join(_task(f"doc-{i}") for i in range(10_000)),
    "big-file.yaml": _task("big-file", "  env:\n    BIG: '" + "x" * (1 << 20) + "'\n"),
    "env-keys.yaml": _task(
        "env-keys", "  env:\n" + "".join(f'    "{i}-bad": x\n' for i in range(50_000))
    ),
    "path-long.yaml": _stack("path-long", "").replace("stacks/none", "p" * 100_000),
    "same-name.yaml": "---\n".join([_task("same-name")] * 1_000),
    "blank-lines.yaml": HEADER + " \n" * 500_000 + "kind: Defaults\n",
    "long-line.yaml": HEADER + "kind: Task\nmetadata: {name: long-line}\n" + "a" * 1_000_000,
    "cycle-a.yaml": _cycle(0),
    "cycle-b.yaml": _cycle(1),
    "cycle-c.yaml": _cycle(2),
}

EXPECTED: dict[str, str] = {
    "duration-days.yaml": "'1000000000d' is longer than the limit of 30d",
    "duration-seconds.yaml": "is longer than the limit of 30d",
    "stack-lock-timeout.yaml": "spec.lockTimeout: '1000000000d' is longer than the limit",
    "defaults-timeout.yaml": "spec.timeout: '1000000000d' is longer than the limit",
    "cpu-huge.yaml": "is too large; the limit is 1E",
    "cpu-inf.yaml": "is not a Kubernetes resource quantity",
    "retries-nan.yaml": "spec.retries:",
    "retries-float-overflow.yaml": "spec.retries:",
    "retries-big-int.yaml": "cannot read",
    "toleration-seconds.yaml": "tolerationSeconds",
    "path-component.yaml": "longer than 255 bytes",
    "path-long.yaml": "the path is 100000 bytes long; the limit is 4096",
    "vars-odd.yaml": "spec.varFiles[0]",
    "billion-laughs.yaml": "more than 100000 values once aliases are expanded",
    "merge-bad-target.yaml": "invalid YAML",
    "merge-undefined-alias.yaml": "invalid YAML",
    "merge-list-of-scalars.yaml": "invalid YAML",
    "merge-self.yaml": ":",
    "cron-never.yaml": "cron-never.yaml:6:13: spec.schedule: '0 0 31 2 *' is not a valid cron "
    "expression: it never fires",
    "merge-bomb.yaml": "more than 100000 values once aliases are expanded",
    "nul-bytes.yaml": "invalid YAML",
    "bom.yaml": "spec.retries:",
    "bad-utf8.yaml": "not UTF-8",
    "surrogate.yaml": ":",
    "crlf.yaml": "crlf.yaml:6:12: spec.retries:",
    "tabs.yaml": "invalid YAML",
    "python-tag.yaml": "invalid YAML",
    "unknown-tag.yaml": "invalid YAML",
    "duplicate-keys.yaml": "duplicate key",
    "odd-types.yaml": "kind",
    "complex-keys.yaml": "found unhashable key",
    "near-group-swap.yaml": "unsupported apiVersion 'reconciler.oi/v1alpha1'",
    "near-group-drop.yaml": "unsupported apiVersion 'reconcilr.io/v1alpha1'",
    "near-version.yaml": "unsupported apiVersion 'reconciler.io/v1alpa1'",
    "near-key-lower.yaml": "apiversion: unknown field; did you mean 'apiVersion'?",
    "near-key-upper.yaml": "APIVersion: unknown field; did you mean 'apiVersion'?",
    "near-key-snake.yaml": "api_version: unknown field; did you mean 'apiVersion'?",
    "no-api-version.yaml": "apiVersion: is required",
    "near-flow-json.yaml": "unsupported apiVersion 'Reconciler.IO/v1alpha1'",
    "long-key.yaml": "invalid YAML: mapping values are not allowed",
    "long-name.yaml": "metadata.name:",
    "many-aliases.yaml": "spec.args[0]",
    "directive-after-content.yaml": "is required",
    "unterminated.yaml": "invalid YAML",
    "deep-flow-seq.yaml": "nests more than 64 levels deep",
    "deep-flow-map.yaml": "nests more than 64 levels deep",
    "deep-1000-cache.yaml": "nests more than 64 levels deep",
    "deep-block-map.yaml": "nests more than 64 levels deep",
    "deep-block-seq.yaml": "nests more than 64 levels deep",
    "many-docs.yaml": "more than 1000 documents",
    "big-file.yaml": "declaration files are limited to 1048576 bytes",
    "env-keys.yaml": "more errors in this file",
    "same-name.yaml": "task/same-name is declared more than once; also at same-name.yaml:8, "
    "same-name.yaml:15, same-name.yaml:22, same-name.yaml:29, same-name.yaml:36 and 994 more",
    "blank-lines.yaml": "blank-lines.yaml:1:1: metadata: is required",
    "long-line.yaml": "invalid YAML",
    "cycle-a.yaml": "dependency cycle: task/cycle-0 → task/cycle-1 →",
    "cycle-b.yaml": "part of a dependency cycle of 3000 entries, reported at cycle-a.yaml:1",
    "cycle-c.yaml": "part of a dependency cycle of 3000 entries",
}
"""A part of what each file's first error line must say."""


def corpus(target: Path) -> list[str]:
    """Write every hostile file into the folder `target`; their names."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(HOSTILE.glob("*.yaml")):
        shutil.copyfile(path, target / path.name)
    for name, text in GENERATED.items():
        (target / name).write_text(text, encoding="utf-8")
    return sorted(p.name for p in target.glob("*.yaml"))
