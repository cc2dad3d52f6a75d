"""`reconciler run`, `status` and `logs` as a person at a terminal (or a CI job) meets them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.harness import task_yaml
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.githttp import GitHTTPServer
from tests.support.gitservers import (
    GitUser,
    branch_head,
    git_env,
    make_bare_remote,
)
from tests.support.waiting import wait_until

PY = sys.executable


def reconciler(*args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "reconciler", *args], capture_output=True, text=True,
                          env={**git_env(), **(env or {})}, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def remote(git_root: Path) -> Path:
    return make_bare_remote(git_root / "cli.git", {
        "ok.yaml": task_yaml("ok", [PY, "-c", "print('fine')"]),
    })


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_once_succeeds_and_status_and_logs_read_it_back(remote: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = reconciler("run", "--once", "--repo", f"file://{remote}", "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    table = reconciler("status", "--repo", str(remote))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["ENTRY", "PHASE", "DRIFT", "LAST", "RUN",
                                                     "FINISHED", "MESSAGE"]
    assert "task/ok" in table.stdout
    assert "Succeeded" in table.stdout
    log = reconciler("logs", "task/ok", "--state-dir", str(state))
    assert log.returncode == 0, log.stderr
    assert "fine" in log.stdout
    missing = reconciler("logs", "task/nope", "--state-dir", str(state))
    assert (missing.returncode, one_line(missing.stderr)) == (
        1, f"reconciler: no run of task/nope is recorded in state dir {state}")
    nowhere = reconciler("logs", "task/ok", "--state-dir", str(tmp_path / "nowhere"))
    assert nowhere.returncode == 1
    assert f"--state-dir {tmp_path / 'nowhere'} does not exist" in one_line(nowhere.stderr)


def test_drift_refuses_a_state_dir_that_is_not_the_daemons(remote: Path, tmp_path: Path) -> None:
    """Planning against an empty state would publish a false drift result: refused, and
    nothing is pushed."""
    empty = tmp_path / "not-the-daemons"
    done = reconciler("drift", "--repo", f"file://{remote}", "--state-dir", str(empty),
                      "stack/network")
    assert done.returncode == 2
    assert "is not a daemon's state dir" in one_line(done.stderr)
    assert branch_head(remote, "reconciler-status") is None


def test_once_exits_1_when_a_run_fails(remote: Path, tmp_path: Path,
                                       git_user: Callable[..., GitUser]) -> None:
    user = git_user(f"file://{remote}")
    user.commit({"bad.yaml": task_yaml("bad", [PY, "-c", "raise SystemExit(5)"])})
    user.push()
    done = reconciler("run", "--once", "--repo", f"file://{remote}",
                      "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 1, done.stderr


def test_flags_come_from_the_environment_too(remote: Path, tmp_path: Path) -> None:
    done = reconciler("run", env={"RECONCILER_REPO": f"file://{remote}",
                                  "RECONCILER_STATE_DIR": str(tmp_path / "env-state"),
                                  "RECONCILER_ONCE": "true"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env-state" / "journal.sqlite").exists()


@pytest.mark.parametrize(("url", "expected"), [
    ("ftp://example.com/repo.git", "ftp"),
    ("file:///nonexistent/repo.git", "/nonexistent/repo.git"),
])
def test_wrong_url_is_one_clear_line(url: str, expected: str, tmp_path: Path) -> None:
    done = reconciler("run", "--repo", url, "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith("reconciler: ")
    assert expected in line


def test_bad_credentials_are_one_line_without_the_password(git_root: Path,
                                                           tmp_path: Path) -> None:
    make_bare_remote(git_root / "private.git", {"ok.yaml": task_yaml("ok", ["true"])})
    wrong = tmp_path / "password"
    wrong.write_text("not-the-" + HTTP_PASSWORD + "\n")
    with GitHTTPServer(git_root, username=HTTP_USER, password=HTTP_PASSWORD) as server:
        done = reconciler("run", "--repo", server.url("private.git"),
                          "--git-username", HTTP_USER, "--git-password-file", str(wrong),
                          "--state-dir", str(tmp_path / "s"))
        ok = reconciler("run", "--once", "--repo", server.url("private.git"),
                        "--state-dir", str(tmp_path / "s2"), "--git-username", HTTP_USER,
                        env={"RECONCILER_GIT_PASSWORD": HTTP_PASSWORD})
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "authentication" in line.lower() or "credentials" in line.lower(), line
    assert HTTP_PASSWORD not in done.stderr + done.stdout
    assert ok.returncode == 0, ok.stderr
    assert HTTP_PASSWORD not in ok.stderr + ok.stdout


def test_unwritable_state_dir_is_one_clear_line(remote: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = reconciler("run", "--repo", f"file://{remote}", "--state-dir", str(blocker / "state"))
    assert done.returncode == 2
    assert one_line(done.stderr).startswith(f"reconciler: state dir {blocker / 'state'} ")


def test_bad_interval_names_the_flag(remote: Path, tmp_path: Path) -> None:
    done = reconciler("run", "--repo", f"file://{remote}", "--interval", "soon")
    assert done.returncode == 2
    assert one_line(done.stderr).startswith("reconciler: --interval: 'soon' is not a duration")


def test_unreachable_remote_in_once_mode_fails_fast(tmp_path: Path) -> None:
    port = 9  # discard: nothing listens on 127.0.0.1:9 here
    done = reconciler("run", "--once", "--repo", f"git://127.0.0.1:{port}/x.git",
                      "--state-dir", str(tmp_path / "s"), timeout=60)
    assert done.returncode in (1, 2)
    assert one_line(done.stderr).startswith("reconciler: ")


def test_daemon_keeps_serving_when_the_remote_is_down_at_start(tmp_path: Path) -> None:
    """An unreachable remote is not a configuration error: the daemon backs off and retries
    instead of exiting, so a remote outage during a rollout does not crash-loop it."""
    # A port bound but never listening refuses every connection, and stays ours for the whole
    # test: a closed port could be taken by another test's server meanwhile.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    url = f"git://127.0.0.1:{holder.getsockname()[1]}/later.git"
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([PY, "-m", "reconciler", "run", "--repo", url, "--state-dir",
                                 str(tmp_path / "s"), "--listen", ""], env=git_env(),
                                stdout=out, stderr=out, start_new_session=True)
    try:
        def failed_a_cycle() -> bool:
            assert proc.poll() is None, log.read_text()
            text = log.read_text()
            # Backing off at start, then serving: its first cycle meets the same outage.
            return "remote not reachable yet" in text and "reconcile stage failed" in text

        wait_until(failed_a_cycle, timeout=60, what="the daemon's first cycle to fail",
                   details=log.read_text)
        assert proc.poll() is None, log.read_text()  # still serving, not crashed
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        holder.close()
    assert proc.returncode == 0, log.read_text()
