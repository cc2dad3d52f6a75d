"""The status branch repairs itself (DESIGN §7): a person who force-pushes, resets, deletes or
edits `reconciler-status` gets every status file back one cycle later, and a daemon restarted
with its state dir but a reset status branch runs nothing again that already succeeded."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger

from reconciler import status
from tests.daemon.conftest import World, task
from tests.daemon.test_stacks import drift_state_by_hand, module, resources, stack

STATUS = "reconciler-status"


def status_tree(bare: Path, branch: str = STATUS) -> dict[str, str]:
    """Every file under status/ on the remote's branch, as the git CLI shows it."""
    listed = subprocess.run(
        ["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", branch, "status"],
        capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        return {}
    return {
        path: subprocess.run(["git", "--git-dir", str(bare), "show", f"{branch}:{path}"],
                             capture_output=True, text=True, check=True).stdout
        for path in listed.stdout.split()
    }


def status_commits(bare: Path) -> list[str]:
    return subprocess.run(["git", "--git-dir", str(bare), "rev-list", "--reverse", STATUS],
                          capture_output=True, text=True, check=True).stdout.split()


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


def ledger_task(name: str, ledger: Path, **spec: object) -> str:
    return task(name, f"open({str(ledger)!r}, 'a').write({name!r} + '\\n')", **spec)


def three_tasks(world: Callable[..., World], tmp_path: Path) -> tuple[World, Path]:
    ledger = tmp_path / "ledger"
    w = world({
        "a.yaml": ledger_task("a", ledger),
        "b.yaml": ledger_task("b", ledger),
        "c.yaml": ledger_task("c", ledger, dependsOn=["task/a"]),
    })
    w.settle()
    assert sorted(ledger.read_text().split()) == ["a", "b", "c"]
    return w, ledger


def as_user(w: World, *args: str) -> None:
    """The git CLI of the person who rewrites the status branch."""
    w.user.git("fetch", "--quiet", "origin", f"+refs/heads/{STATUS}:refs/remotes/origin/{STATUS}")
    w.user.git(*args)


def reset_to_first_status_commit(w: World) -> None:
    as_user(w, "push", "--quiet", "--force", "origin",
            f"{status_commits(w.bare)[0]}:refs/heads/{STATUS}")


def replace_with_unrelated_history(w: World) -> None:
    w.user.checkout("fresh-status", orphan=True)
    w.user.commit({"status/NOTE.md": "started over\n"}, "Start the status branch over")
    w.user.push(STATUS, force=True)
    w.user.git("clean", "-fdq")  # main's files, no longer tracked on the orphan branch
    w.user.checkout("main")


def delete_branch(w: World) -> None:
    as_user(w, "push", "--quiet", "origin", f":refs/heads/{STATUS}")


def delete_and_recreate(w: World) -> None:
    delete_branch(w)
    replace_with_unrelated_history(w)


REWRITES = {
    "force-pushed to an older commit": reset_to_first_status_commit,
    "replaced by an unrelated history": replace_with_unrelated_history,
    "deleted": delete_branch,
    "deleted and recreated": delete_and_recreate,
}


@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_a_rewritten_status_branch_is_whole_again_one_cycle_later(
        world: Callable[..., World], tmp_path: Path, warnings: list[str], rewrite: str) -> None:
    w, ledger = three_tasks(world, tmp_path)
    before = status_tree(w.bare)
    assert len(before) == 5  # three records, README, errors.yaml

    REWRITES[rewrite](w)
    assert status_tree(w.bare) != before
    w.daemon.cycle(fetch=True)

    after = status_tree(w.bare)
    assert {p: d for p, d in after.items() if p != "status/NOTE.md"} == before
    rendered = status.render(w.daemon.records, w.daemon.desired.errors,
                             branch=w.daemon.source.branch, revision=w.daemon.revision,
                             redact=w.daemon.redact)
    assert {p: d.decode() for p, d in rendered.items()} == before
    if "unrelated" in rewrite or "recreated" in rewrite:
        assert after["status/NOTE.md"] == "started over\n"  # a person's file is left alone
    assert any(line.startswith("status branch reconciler-status") for line in warnings), warnings
    assert sorted(ledger.read_text().split()) == ["a", "b", "c"]  # nothing ran again
    head = w.status_head()
    w.daemon.cycle(fetch=True)
    assert w.status_head() == head  # and nothing more to write


def test_status_files_a_person_deleted_or_edited_are_written_again(
        world: Callable[..., World], tmp_path: Path, warnings: list[str]) -> None:
    w, _ = three_tasks(world, tmp_path)
    before = status_tree(w.bare)
    as_user(w, "checkout", "--quiet", "-b", "status-edit", f"origin/{STATUS}")
    w.user.commit({"status/tasks/a.yaml": None, "status/tasks/b.yaml": "phase: Failed\n",
                   "status/NOTE.md": "kept\n"}, "Edit the status by hand")
    w.user.push(STATUS)  # a fast-forward: the daemon's commit is still in the history
    w.user.checkout("main")

    w.daemon.cycle(fetch=True)

    after = status_tree(w.bare)
    assert after.pop("status/NOTE.md") == "kept\n"
    assert after == before
    assert any("changed files under status/; writing 2 status file(s) again" in line
               for line in warnings), warnings


def test_a_user_commit_that_leaves_status_files_alone_causes_no_status_commit(
        world: Callable[..., World], tmp_path: Path, warnings: list[str]) -> None:
    w, _ = three_tasks(world, tmp_path)
    as_user(w, "checkout", "--quiet", "-b", "status-note", f"origin/{STATUS}")
    w.user.commit({"NOTES.md": "outside status/\n"}, "A note")
    w.user.push(STATUS)
    w.user.checkout("main")
    theirs = w.status_head()

    w.daemon.cycle(fetch=True)
    w.daemon.cycle(fetch=True)

    assert w.status_head() == theirs
    assert not warnings


@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_a_restart_after_the_status_branch_was_rewritten_runs_nothing_again(
        world: Callable[..., World], tmp_path: Path, rewrite: str) -> None:
    w, ledger = three_tasks(world, tmp_path)
    w.push({"b.yaml": ledger_task("b", ledger, env={"VERSION": "2"})}, "A new version of b")
    w.settle()
    assert sorted(ledger.read_text().split()) == ["a", "b", "b", "c"]
    before = {name: w.status(f"task/{name}") for name in "abc"}
    w.daemon.executor.close()

    REWRITES[rewrite](w)  # while the daemon is down
    w.restart()
    w.settle()

    assert sorted(ledger.read_text().split()) == ["a", "b", "b", "c"]  # one run per version
    for name in "abc":
        status = w.status(f"task/{name}")
        assert status["phase"] == "Succeeded"
        assert status["lastRun"] == before[name]["lastRun"]
        assert status["lastSuccess"] == before[name]["lastSuccess"]
        assert status["specHash"] == before[name]["specHash"]
    assert w.status("task/c")["dependencies"] == before["c"]["dependencies"]


def test_status_kept_on_the_tracked_branch_is_written_again_after_a_force_push(
        world: Callable[..., World], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    w = world({"a.yaml": ledger_task("a", ledger)}, status_branch="main")
    w.settle()
    before = status_tree(w.bare, "main")
    assert before
    w.user.pull("main")
    first = w.user.git("rev-list", "--max-parents=0", "HEAD")
    w.user.git("reset", "--quiet", "--hard", first)  # the declarations, without any status
    w.user.push("main", force=True)

    w.daemon.cycle(fetch=True)

    assert status_tree(w.bare, "main") == before
    assert ledger.read_text() == "a\n"


@pytest.mark.engine
def test_a_restart_after_the_status_branch_was_deleted_neither_applies_nor_checks_again(
        world: Callable[..., World]) -> None:
    """A stack's apply and its last drift check are adopted: the drifted resource is not put
    back by a second apply, and the drift found is still reported."""
    w = world({"web.yaml": stack(drift={"schedule": "*/5 * * * *"}), **module()})
    w.settle()
    drift_state_by_hand(w, "terraform_data.app", "huge")
    w.clock.advance(minutes=6)
    w.settle()
    before = w.status("stack/web")
    assert before["drift"]["state"] == "Drifted"
    w.daemon.executor.close()

    delete_branch(w)
    w.restart()
    w.settle()

    after = w.status("stack/web")
    assert after["phase"] == "Succeeded"
    assert after["lastRun"]["id"] == before["lastRun"]["id"]
    assert after["drift"] == before["drift"]
    assert resources(w)["terraform_data.app"] == "huge"  # not applied again
