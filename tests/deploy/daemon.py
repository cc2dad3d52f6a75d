"""A real daemon to scrape: `reconciler run` in a subprocess against a `git daemon` remote
whose declarations exercise every metric the alerts and the dashboard rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Daemon
from tests.support.gitservers import GitDaemon, make_bare_remote
from tests.support.http import request
from tests.support.waiting import wait_until

PY = sys.executable
DEADLINE = 60.0


def _task(name: str, **spec: Any) -> str:
    document = {"apiVersion": "reconciler.io/v1alpha1", "kind": "Task",
                "metadata": {"name": name}, "spec": spec}
    return json.dumps(document) + "\n"


DECLARATIONS: dict[str, str | bytes] = {
    "tasks/ok.yaml": _task("ok", command=[PY, "-c", "print('fine')"]),
    "tasks/broken.yaml": _task("broken", command=[PY, "-c", "raise SystemExit(3)"]),
    # A misspelled field: the entry is named, and Invalid.
    "tasks/typo.yaml": _task("typo", comand=[PY, "-c", "pass"]),
    # A YAML syntax error: not even the name can be read.
    "tasks/unreadable.yaml": "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: [\n",
}


class Scrape:
    """One `/metrics` answer: its text, its families, and the sample names it exposes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))

    def samples(self, prefix: str = "reconciler_") -> list[tuple[str, dict[str, str], float]]:
        return [(s.name, dict(s.labels), s.value) for f in self.families for s in f.samples
                if s.name.startswith(prefix)]

    def sample_names(self) -> set[str]:
        """Every series name the daemon can expose: those present, and those its families'
        types define (a histogram's `_bucket`, `_sum`, `_count`) even before a first sample."""
        names = {name for name, _, _ in self.samples("")}
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "summary": ("_sum", "_count", ""), "gauge": ("",), "info": ("_info",)}
        for family in self.families:
            names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        return names

    def has(self, series: str, labels: dict[str, str]) -> bool:
        return any(n == series and labels.items() <= got.items()
                   for n, got, _ in self.samples())


def wait_for_scrape(url: str, done: Callable[[Scrape], bool],
                    process: subprocess.Popen[bytes], log: Path) -> Scrape:
    last: list[Scrape | None] = [None]

    def check() -> Scrape | None:
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited with {process.returncode}:\n"
                                 f"{log.read_text()[-4000:]}")
        try:
            response = request(url + "/metrics")
        except OSError:  # not serving yet
            return None
        if response.status != 200:
            return None
        scrape = last[0] = Scrape(response.text)
        return scrape if done(scrape) else None

    def details() -> str:
        scraped = last[0].text if last[0] else "(none)"
        return f"last scrape:\n{scraped}\nlog:\n{log.read_text()[-4000:]}"

    return wait_until(check, timeout=DEADLINE, interval=0.1,
                      what="the daemon to reach the expected state", details=details)


@contextmanager
def running_daemon(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """The daemon on the local executor, reconciling DECLARATIONS every second."""
    served = workdir / "served"
    make_bare_remote(served / "declarations.git", DECLARATIONS)
    secret = workdir / "webhook-secret"
    secret.write_text("a-webhook-secret-for-the-scrape\n")
    with GitDaemon(served) as git_daemon, Daemon(
        git_daemon.url("declarations.git"), workdir / "state",
        "--executor", "local", "--webhook-secret-file", str(secret), log_level="INFO",
    ) as daemon:
        url = daemon.url
        assert daemon.process is not None
        yield url, daemon.process, daemon.log_path
