"""Issue-level behaviour of the daemon, end to end: a user pushes, the daemon runs, status
appears on the remote's status branch. Real `git daemon`, real `git` CLI, real subprocesses."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.harness import (
    STATUS_BRANCH,
    Daemon,
    status_file,
    task_yaml,
    wait_for_status,
)
from tests.support.gitservers import GitDaemon, GitUser, make_bare_remote
from tests.support.http import request
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
PY = sys.executable


@pytest.fixture
def remote(git_root: Path) -> Path:
    return make_bare_remote(git_root / "decl.git", {
        "README.md": "# declarations\n",
        "tasks/hello.yaml": task_yaml("hello", [PY, "-c", "print('hello from a task')"]),
    })


@pytest.fixture
def user(remote: Path, git_daemon: GitDaemon, git_user: Callable[..., GitUser]) -> GitUser:
    return git_user(git_daemon.url(remote.name))


def succeeded_at(commit: str) -> Callable[[dict[str, object]], bool]:
    def check(data: dict[str, object]) -> bool:
        run = data.get("lastRun") or {}
        assert isinstance(run, dict)
        return data.get("phase") == "Succeeded" and run.get("revision") == commit
    return check


def test_pushed_task_runs_and_edits_run_again(remote: Path, git_daemon: GitDaemon,
                                              user: GitUser, tmp_path: Path) -> None:
    first = user.git("rev-parse", "HEAD")
    with Daemon(git_daemon.url(remote.name), tmp_path / "state") as daemon:
        data = wait_for_status(remote, "status/tasks/hello.yaml", succeeded_at(first),
                               daemon=daemon)
        assert data["lastRun"]["exitCode"] == 0
        assert "hello from a task" in data["lastRun"]["logTail"]
        assert data["commit"] == first

        second = user.commit({"tasks/hello.yaml": task_yaml(
            "hello", [PY, "-c", "print('hello again')"])}, "Say it again")
        user.push()
        data = wait_for_status(remote, "status/tasks/hello.yaml", succeeded_at(second),
                               daemon=daemon)
        assert "hello again" in data["lastRun"]["logTail"]
        assert data["lastRun"]["trigger"] == "changed"
    user.git("fetch", "--quiet", "origin", STATUS_BRANCH)
    readme = user.git("show", f"origin/{STATUS_BRANCH}:status/README.md")
    assert "| [task/hello](tasks/hello.yaml) | Succeeded |" in readme
    assert second in readme


def test_failure_timeout_and_broken_yaml(remote: Path, git_daemon: GitDaemon, user: GitUser,
                                         tmp_path: Path) -> None:
    commit = user.commit({
        "tasks/fails.yaml": task_yaml("fails", [PY, "-c",
                                               "import sys; print('about to fail'); sys.exit(3)"]),
        "tasks/slow.yaml": task_yaml("slow", [PY, "-c", "import time; time.sleep(60)"],
                                     timeout="2s"),
        "tasks/broken.yaml": "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata:\n"
                             "  name: broken\nspec:\n  command: [true\n",
    }, "Add tasks")
    user.push()
    with Daemon(git_daemon.url(remote.name), tmp_path / "state") as daemon:
        failed = wait_for_status(remote, "status/tasks/fails.yaml",
                                 lambda d: d.get("phase") == "Failed", daemon=daemon)
        assert failed["lastRun"]["exitCode"] == 3
        assert "about to fail" in failed["lastRun"]["logTail"]
        timed_out = wait_for_status(remote, "status/tasks/slow.yaml",
                                    lambda d: d.get("phase") == "TimedOut", daemon=daemon)
        assert timed_out["lastRun"]["state"] == "TimedOut"
        hello = wait_for_status(remote, "status/tasks/hello.yaml",
                                lambda d: d.get("phase") == "Succeeded", daemon=daemon)
        assert hello["phase"] == "Succeeded"
        errors = status_file(remote, "status/errors.yaml")
        assert errors is not None
        texts = [e["text"] for e in errors["errors"]]
        assert texts == ["tasks/broken.yaml:7:1: invalid YAML: did not find expected ',' or ']' "
                         "(while parsing a flow sequence started on line 6)"]
        readme = user.git("show", f"{commit}:README.md")
        assert readme.startswith("# declarations")
        for name in ("hello", "fails", "slow"):
            data = status_file(remote, f"status/tasks/{name}.yaml")
            assert data is not None
            assert data["phase"] != "Orphaned"


def test_user_commit_on_the_status_branch_survives(remote: Path, git_daemon: GitDaemon,
                                                   user: GitUser, tmp_path: Path,
                                                   git_user: Callable[..., GitUser]) -> None:
    with Daemon(git_daemon.url(remote.name), tmp_path / "state") as daemon:
        wait_for_status(remote, "status/tasks/hello.yaml",
                        lambda d: d.get("phase") == "Succeeded", daemon=daemon)
        editor = git_user(git_daemon.url(remote.name), name="Bob Editor", branch=STATUS_BRANCH)
        editor.commit({"status/NOTES.md": "on call: bob\n"}, "Notes for the on-call")
        editor.push(STATUS_BRANCH)
        second = user.commit({"tasks/hello.yaml": task_yaml(
            "hello", [PY, "-c", "print('after notes')"])}, "Change")
        user.push()
        wait_for_status(remote, "status/tasks/hello.yaml", succeeded_at(second), daemon=daemon)
    editor.pull(STATUS_BRANCH)
    assert (editor.workdir / "status/NOTES.md").read_text() == "on call: bob\n"
    assert "Notes for the on-call" in editor.log()


def _signed_post(url: str, body: bytes, secret: bytes, *, good: bool) -> int:
    signature = hmac.new(secret if good else b"wrong", body, hashlib.sha256).hexdigest()
    return request(url, "POST", body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-Hub-Signature-256": f"sha256={signature}"}).status


def test_webhook_bad_signature_is_refused_good_one_starts_a_cycle(
        remote: Path, git_daemon: GitDaemon, user: GitUser, tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text("s3cret-webhook-value\n")
    with Daemon(git_daemon.url(remote.name), tmp_path / "state",
                "--webhook-secret-file", str(secret_file), interval="1h") as daemon:
        wait_for_status(remote, "status/tasks/hello.yaml",
                        lambda d: d.get("phase") == "Succeeded", daemon=daemon)
        commit = user.commit({"tasks/hello.yaml": task_yaml(
            "hello", [PY, "-c", "print('woken by a hook')"])}, "Change")
        user.push()
        body = json.dumps({"ref": "refs/heads/main", "after": commit}).encode()
        hook = f"{daemon.url}/hooks/git"
        assert _signed_post(hook, body, b"s3cret-webhook-value", good=False) == 401
        time.sleep(1.5)
        assert not any(commit[:12] in line.get("message", "") for line in daemon.logs())
        sent = time.time()
        assert _signed_post(hook, body, b"s3cret-webhook-value", good=True) == 202
        loaded = wait_until(lambda: [line for line in daemon.logs()
                                     if f"at {commit[:12]}" in line.get("message", "")
                                     and line.get("message", "").startswith("loaded")],
                            timeout=10, what="the cycle the webhook triggered",
                            details=daemon.log_text)
        assert _log_time(loaded[0]) - sent < 1.0
        wait_for_status(remote, "status/tasks/hello.yaml", succeeded_at(commit), daemon=daemon)
        assert "s3cret-webhook-value" not in daemon.log_text()


def _log_time(line: dict[str, object]) -> float:
    from datetime import datetime

    value = str(line["time"])
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_sigkill_during_a_run_loses_and_repeats_nothing(remote: Path, git_daemon: GitDaemon,
                                                        user: GitUser, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    script = (f"import time, pathlib; p = pathlib.Path({str(ledger)!r}); "
              "p.open('a').write('start\\n'); time.sleep(4); p.open('a').write('end\\n'); "
              "print('finished')")
    commit = user.commit({"tasks/long.yaml": task_yaml("long", [PY, "-c", script])}, "Long")
    user.push()
    state = tmp_path / "state"
    daemon = Daemon(git_daemon.url(remote.name), state).start()
    try:
        wait_until(lambda: ledger.exists() and "start" in ledger.read_text(), timeout=30,
                   what="the run to start", details=daemon.log_text)
        daemon.kill()
    finally:
        daemon.stop()
    with Daemon(git_daemon.url(remote.name), state) as restarted:
        data = wait_for_status(remote, "status/tasks/long.yaml", succeeded_at(commit),
                               daemon=restarted, timeout=40)
        assert "finished" in data["lastRun"]["logTail"]
        time.sleep(2)  # a duplicate would start within a poll interval
    assert ledger.read_text().splitlines() == ["start", "end"]


def test_sigterm_exits_cleanly(remote: Path, git_daemon: GitDaemon, tmp_path: Path) -> None:
    daemon = Daemon(git_daemon.url(remote.name), tmp_path / "state").start()
    try:
        wait_for_status(remote, "status/tasks/hello.yaml",
                        lambda d: d.get("phase") == "Succeeded", daemon=daemon)
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.stop()  # whatever failed above, no daemon outlives its test
