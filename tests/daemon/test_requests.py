"""Run requests through Git (DESIGN §9): a failed task is run again by changing its
`reconciler.io/run-requested` annotation, once per value, a restart included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.daemon.conftest import World, task


def requested(name: str, code: str, value: str) -> str:
    document = json.loads(task(name, code))
    document["metadata"]["annotations"] = {"reconciler.io/run-requested": value}
    return json.dumps(document, indent=2) + "\n"


def test_a_failed_task_is_run_again_by_a_request_once(world: Callable[..., World],
                                                       tmp_path: Path) -> None:
    # The task fails until a file outside Git exists: the fix a request follows.
    marker = tmp_path / "secret-is-there"
    code = f"import os, sys; sys.exit(0 if os.path.exists({str(marker)!r}) else 3)"
    w = world({"load.yaml": task("load", code)})
    w.settle()
    failed = w.status("task/load")
    assert failed["phase"] == "Failed"
    marker.touch()
    w.push({"load.yaml": requested("load", code, "after-the-secret-fix")})
    w.settle()
    rerun = w.status("task/load")
    assert (rerun["phase"], rerun["lastRun"]["trigger"]) == ("Succeeded", "requested")
    assert rerun["lastRun"]["id"] != failed["lastRun"]["id"]
    assert rerun["lastRun"]["specHash"] == failed["lastRun"]["specHash"]
    assert rerun["requests"] == {"run": "after-the-secret-fix"}
    marker.unlink()  # a second run would fail now
    w.restart()
    w.settle()
    assert w.status("task/load")["lastRun"]["id"] == rerun["lastRun"]["id"]
    w.push({"load.yaml": requested("load", code, "again")})
    w.settle()
    w.daemon.flush_status()  # the status commit held back while the run was in flight
    third = w.status("task/load")
    assert (third["phase"], third["lastRun"]["trigger"]) == ("Failed", "requested")
