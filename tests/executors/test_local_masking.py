"""A run's log on disk is masked as it is written, also when the run prints a secret's escaped
form in two writes that the supervisor reads apart."""

from __future__ import annotations

import json
import stat
import sys

from reconciler.executors.local.history import RUNS_DIR, WORK_DIR
from reconciler.redact import MASK
from reconciler.types import RunState
from tests.executors.conftest import LocalHarness, request_for, task_entry, wait_for_run

SECRET = 'split"ZQX\\WVK-secret'

# Prints the secret JSON-escaped in two writes, cut inside the escape `\"`, and writes the
# second only once the supervisor has read the first: its log already shows the marker.
SPLITTER = r"""
import json, os, sys, time
from pathlib import Path

form = json.dumps(os.environ["TOKEN"])
cut = form.index('\\"') + 1
log = Path(os.environ["HOME"]).parents[2] / "runs" / os.environ["RECONCILER_RUN_ID"] / "log"
sys.stdout.write("marker " + form[:cut])
sys.stdout.flush()
deadline = time.monotonic() + 30
while b"marker" not in log.read_bytes():
    if time.monotonic() > deadline:
        sys.exit("the first write never reached the log")
    time.sleep(0.01)
sys.stdout.write(form[cut:] + " end\n")
"""


def test_escaped_secret_split_across_two_reads_is_masked(local: LocalHarness) -> None:
    local.add_secret("split", "token", SECRET)
    executor = local.make()
    request = request_for(task_entry("split", [sys.executable, "-c", SPLITTER],
                                     secret_env={"TOKEN": ("split", "token")}))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id, timeout=60)

    assert report.state is RunState.SUCCEEDED, report.log_tail
    on_disk = (local.state_dir / RUNS_DIR / request.run_id / "log").read_text()
    assert on_disk == f'marker "{MASK}" end\n'
    assert json.dumps(SECRET)[1:8] not in executor.logs(request.run_id)


def test_run_and_work_folders_are_private(local: LocalHarness) -> None:
    executor = local.make()
    request = request_for(task_entry("modes", ["true"]))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id, timeout=60)

    assert report.state is RunState.SUCCEEDED, report.log_tail
    for folder in (RUNS_DIR, WORK_DIR):
        assert stat.S_IMODE((local.state_dir / folder).stat().st_mode) == 0o700, folder
