"""README.md walked as a newcomer walks it: every shell command of its `sh` blocks, and every
`.venv/bin/…` command its prose gives, run in order on a fresh clone of this working tree.

The walk is read from the README each time, so a command added there is run here without a
change to this file. What cannot run as a plain command is named in the tables below: a
command that keeps running (`make run`) is started and waited on by condition, then stopped
with SIGTERM; a `# within …` comment is a wait, and each one needs a condition in WAITS; a
command the walk must not run is in NOT_WALKED with the reason and where it is run instead.
The fast test fails when the README has a step none of these tables knows; a long-running
command they do not know fails the walk by its timeout, naming it.

The clone reuses the virtualenv the tests run in (as a `.venv` link) instead of installing
one: `make` is shown the install as up to date, and the walk refuses to start if `make run`
would install anything into it anyway. `PYTHONPATH` puts the clone's own code first.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.cli import build_parser
from tests.support.gitservers import branch_head, git_env
from tests.support.http import request
from tests.support.processes import process_alive
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SHELLS = {"sh", "bash", "shell"}
COMMAND_TIMEOUT = 120.0
STATUS_BRANCH = "reconciler-status"
DEMO_REMOTE = ".demo/remote.git"


@dataclass(frozen=True)
class Command:
    line: int
    text: str

    @property
    def words(self) -> tuple[str, ...]:
        """The command without its comment, to look it up in the tables below."""
        return tuple(shlex.split(self.text, comments=True))

    def __str__(self) -> str:
        return f"README.md:{self.line}: `{self.text}`"


@dataclass(frozen=True)
class Wait:
    line: int
    text: str

    def __str__(self) -> str:
        return f"README.md:{self.line}: `# {self.text}`"


Step = Command | Wait


def readme_steps(text: str) -> list[Step]:
    """The walk README.md describes, in order: the commands of its shell blocks (a comment
    line starting with `within` is a wait), and the `.venv/bin/` commands of its prose."""
    steps: list[Step] = []
    fence = re.compile(r"^```(\S*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
    position = 0
    for block in fence.finditer(text):
        steps += _prose_commands(text, position, block.start())
        if block.group(1) in SHELLS:
            steps += _block_steps(block.group(2), _line_of(text, block.start(2)))
        position = block.end()
    steps += _prose_commands(text, position, len(text))
    return steps


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _prose_commands(text: str, start: int, end: int) -> Iterator[Command]:
    for span in re.finditer(r"`(\.venv/bin/[^`\n]+)`", text[start:end]):
        yield Command(_line_of(text, start + span.start()), span.group(1))


def _block_steps(body: str, first_line: int) -> Iterator[Step]:
    note: list[str] = []
    note_line = 0
    pending = ""
    pending_line = 0
    for number, line in enumerate(body.splitlines(), first_line):
        stripped = line.strip()
        if stripped.startswith("#") and not pending:
            note_line = note_line or number
            note.append(stripped.lstrip("#").strip())
            continue
        if note:
            if note[0].startswith("within "):
                yield Wait(note_line, " ".join(note))
            note, note_line = [], 0
        if not stripped:
            continue
        if stripped.endswith("\\"):
            pending_line = pending_line or number
            pending += stripped[:-1].rstrip() + " "
            continue
        yield Command(pending_line or number, pending + stripped)
        pending, pending_line = "", 0
    if note and note[0].startswith("within "):
        yield Wait(note_line, " ".join(note))


# --- what the walk cannot run as a plain command ------------------------------------------

NOT_WALKED: dict[tuple[str, ...], str] = {
    ("make", "test"): "runs every check and test, this walk among them; CI runs it (.ci/run)",
}


@dataclass
class Walk:
    """A fresh clone, the environment of a newcomer's terminal in it, and what runs there."""

    clone: Path
    env: dict[str, str] = field(repr=False)
    transcript: list[str] = field(default_factory=list, repr=False)
    started: float = field(default_factory=time.monotonic, repr=False)
    daemon: subprocess.Popen[bytes] | None = None
    daemon_log: Path | None = None
    address: str | None = None

    # -- reading what the daemon published, as the README's user does ---------------------

    def status_file(self, path: str) -> Any:
        done = subprocess.run(
            ["git", "--git-dir", str(self.clone / DEMO_REMOTE), "show",
             f"refs/heads/{STATUS_BRANCH}:{path}"],
            env=self.env, capture_output=True, text=True, timeout=60, check=False)
        return YAML(typ="safe").load(done.stdout) if done.returncode == 0 else None

    def status_readme(self) -> str:
        done = subprocess.run(
            ["git", "--git-dir", str(self.clone / DEMO_REMOTE), "show",
             f"refs/heads/{STATUS_BRANCH}:status/README.md"],
            env=self.env, capture_output=True, text=True, timeout=60, check=False)
        return done.stdout if done.returncode == 0 else ""

    def note(self, line: str) -> None:
        """A line of the transcript, with the seconds since the walk started."""
        self.transcript.append(f"[{time.monotonic() - self.started:5.1f}s] {line}")

    def details(self) -> str:
        log = self.daemon_log.read_text(errors="replace") if self.daemon_log else ""
        tail = "\n".join(log.splitlines()[-40:])
        return "walked so far:\n" + "\n".join(self.transcript) + f"\n--- daemon log ---\n{tail}"

    def check_daemon(self) -> None:
        """Stop waiting at once when the daemon a wait depends on is gone."""
        if self.daemon is not None and self.daemon.poll() is not None:
            raise AssertionError(f"`make run` exited with {self.daemon.returncode}\n"
                                 + self.details())

    def wait(self, what: str, condition: Callable[[], object], timeout: float) -> None:
        def checked() -> object:
            self.check_daemon()
            return condition()

        wait_until(checked, timeout=timeout, interval=0.5, what=what, details=self.details)

    # -- running the README's commands -----------------------------------------------------

    def shell(self, command: Command) -> None:
        text = command.text
        if self.address is not None:
            # The README's metrics address is the default one; this daemon listens on port 0.
            text = text.replace(default_listen(), self.address)
        self.note(f"$ {text}")
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", text], cwd=self.clone, env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            out, _ = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(
                f"{command} did not finish within {COMMAND_TIMEOUT:g}s; a command meant to "
                "keep running needs a start condition in DAEMONS\n" + self.details()) from None
        shown = out.decode(errors="replace").rstrip()
        if shown:
            self.transcript.append(shown)
        assert process.returncode == 0, (
            f"{command} exited with {process.returncode}:\n{shown}\n" + self.details())

    def start_daemon(self, command: Command) -> None:
        assert self.daemon is None, f"{command}: a daemon is already running"
        self.daemon_log = self.clone.parent / "daemon.log"
        with self.daemon_log.open("wb") as log:
            self.daemon = subprocess.Popen(
                ["bash", "-c", command.text], cwd=self.clone, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.note(f"$ {command.text} &")

        def printed_address() -> str | None:
            found = re.search(r"serving metrics and webhooks on http://(\S+)",
                              self.daemon_log.read_text(errors="replace")
                              if self.daemon_log else "")
            return found.group(1) if found else None

        self.wait("the daemon to print where it serves metrics", printed_address, 120)
        self.note(f"daemon serving on {printed_address()}")
        self.address = printed_address()

        def metrics() -> bool:
            try:
                answer = request(f"http://{self.address}/metrics")
            except OSError:
                return False
            return answer.status == 200 and "reconciler_" in answer.text

        self.wait(f"metrics on http://{self.address}/metrics", metrics, 60)
        remote = self.clone / DEMO_REMOTE
        self.wait("the first status commit on the demo remote",
                  lambda: branch_head(remote, STATUS_BRANCH), 120)
        # "Within seconds of starting, the sample tasks run and the sample stacks are applied."
        self.wait("every sample entry Succeeded in status/README.md",
                  lambda: _phases(self.status_readme()) and set(
                      _phases(self.status_readme()).values()) == {"Succeeded"}, 120)

    def stop_daemon(self) -> None:
        """SIGTERM to the daemon, as a service manager stops it; `make` then exits with the
        daemon's own exit code."""
        if self.daemon is None:
            return
        daemons = [p for p in _descendants(self.daemon.pid) if _is_the_daemon(p)]
        assert len(daemons) == 1, f"`make run` runs {len(daemons)} daemons\n" + self.details()
        os.kill(daemons[0], signal.SIGTERM)
        try:
            code = self.daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("the daemon did not stop within 60s of SIGTERM\n"
                                 + self.details()) from None
        log = self.daemon_log.read_text(errors="replace") if self.daemon_log else ""
        assert code == 0, f"`make run` exited with {code} after SIGTERM\n" + self.details()
        assert "received SIGTERM" in log, self.details()
        assert log.rstrip().endswith("stopped"), self.details()

    def kill(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            os.killpg(self.daemon.pid, signal.SIGKILL)
            self.daemon.wait()


def _phases(status_readme: str) -> dict[str, str]:
    """Entry → phase, from the table of the status README."""
    phases: dict[str, str] = {}
    for row in status_readme.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        entry = re.match(r"\[([a-z]+/[-a-z0-9]+)\]", cells[0])
        if entry and len(cells) > 1:
            phases[entry.group(1)] = cells[1]
    return phases


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _is_the_daemon(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return process_alive(pid) and b"run" in argv and any(
        a.endswith(b"/reconciler") for a in argv)


DAEMONS: dict[tuple[str, ...], Callable[[Walk, Command], None]] = {
    ("make", "run"): Walk.start_daemon,
}


def _reran_after_the_push(walk: Walk) -> bool:
    head = subprocess.run(["git", "-C", str(walk.clone / "demo"), "rev-parse", "HEAD"],
                          env=walk.env, capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip()
    for name in ("build-report", "publish-report"):
        record = walk.status_file(f"status/tasks/{name}.yaml") or {}
        last = record.get("lastRun") or {}
        if (last.get("revision"), last.get("state")) != (head, "Succeeded"):
            return False
    return True


def _network_drifted(walk: Walk) -> bool:
    record = walk.status_file("status/stacks/network.yaml") or {}
    return (record.get("drift") or {}).get("state") == "Drifted"


WAITS: list[tuple[re.Pattern[str], str, Callable[[Walk], bool], float]] = [
    # The poll interval is 10 s; the timeouts are for a busy machine, not a promise.
    (re.compile(r"^within one poll interval\b.*\bthe task runs again, then publish-report"),
     "build-report and publish-report to run again at the pushed commit",
     _reran_after_the_push, 120),
    (re.compile(r"^within a minute\b"), "the next drift plan to find stack/network Drifted",
     _network_drifted, 60 + 90),
]


def _wait_for(wait: Wait) -> tuple[str, Callable[[Walk], bool], float]:
    known = [(what, condition, timeout) for pattern, what, condition, timeout in WAITS
             if pattern.search(wait.text)]
    assert len(known) == 1, (
        f"{wait} waits for something the walk has {len(known)} conditions for; give it "
        "exactly one in WAITS (tests/cli/test_readme_walk.py)")
    return known[0]


def default_listen() -> str:
    found = re.search(r"^LISTEN \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, "the Makefile no longer sets LISTEN"
    return found.group(1)


# --- the tests ------------------------------------------------------------------------------


def test_the_walk_knows_every_step_of_the_readme() -> None:
    steps = readme_steps(README.read_text())
    commands = [step for step in steps if isinstance(step, Command)]
    for step in steps:
        if isinstance(step, Wait):
            _wait_for(step)
    words = {command.words for command in commands}
    # A table entry the README no longer has is a condition nobody checks any more.
    for table in (DAEMONS, NOT_WALKED):
        assert set(table) <= words, set(table) - words
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    # The daemon starts before anything that needs it.
    assert commands[0].words in DAEMONS
    # Every command the prose gives to paste is walked too, and the metrics address the
    # README shows is the one `make run` serves.
    assert any(c.text.startswith(".venv/bin/reconciler status") for c in commands)
    assert any(default_listen() in c.text for c in commands)


def test_the_steps_are_read_in_order_with_their_lines() -> None:
    text = ("intro `.venv/bin/a x`\n\n```sh\nmake run   # starts\n# within a minute:\n"
            "long \\\n  command\n```\n\n```yaml\nnot: run\n```\nthen `.venv/bin/b`\n")
    assert readme_steps(text) == [
        Command(1, ".venv/bin/a x"), Command(4, "make run   # starts"),
        Wait(5, "within a minute:"), Command(6, "long command"), Command(13, ".venv/bin/b"),
    ]


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    """A fresh clone of this working tree (its uncommitted changes included), with the
    virtualenv of this test run linked in as `.venv`."""
    venv = Path(sys.prefix)
    stamp = venv / ".installed-run"
    if not stamp.exists():
        pytest.skip(f"the walk reuses the virtualenv `make run` installs; {stamp} is missing")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env.update(git_env(home), LISTEN="127.0.0.1:0")
    clone = tmp_path / "walk" / "reconciler"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], env=env, check=True,
                   capture_output=True, timeout=120)
    _copy_uncommitted(clone, env)
    (clone / ".venv").symlink_to(venv)
    # The install is current for this pyproject.toml: `make run` must not install again.
    os.utime(clone / "pyproject.toml", (stamp.stat().st_mtime - 1,) * 2)
    planned = subprocess.run(["make", "-n", "run"], cwd=clone, env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert "pip install" not in planned, f"`make run` would install into {venv}:\n{planned}"
    env["PYTHONPATH"] = str(clone)
    walker = Walk(clone, env)
    try:
        yield walker
    finally:
        walker.kill()


def _copy_uncommitted(clone: Path, env: dict[str, str]) -> None:
    diff = subprocess.run(["git", "-C", str(ROOT), "diff", "HEAD", "--binary"], env=env,
                          capture_output=True, check=True, timeout=60).stdout
    if diff:
        subprocess.run(["git", "-C", str(clone), "apply", "--binary", "-"], input=diff,
                       env=env, capture_output=True, check=True, timeout=60)
    untracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard", "-z"], env=env,
        capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, untracked):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)


def _untracked(clone: Path, env: dict[str, str]) -> str:
    return subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], env=env,
                          capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.mark.slow
def test_the_readme_walks_on_a_fresh_clone(walk: Walk) -> None:
    before = _untracked(walk.clone, walk.env)
    for step in readme_steps((walk.clone / "README.md").read_text()):
        if isinstance(step, Wait):
            what, condition, timeout = _wait_for(step)
            walk.note(f"# {step.text}")
            walk.wait(f"{what} ({step})", partial(condition, walk), timeout)
        elif step.words in NOT_WALKED:
            walk.note(f"# not walked: {step.text}: {NOT_WALKED[step.words]}")
        elif step.words in DAEMONS:
            DAEMONS[step.words](walk, step)
        else:
            walk.check_daemon()
            walk.shell(step)
    walk.stop_daemon()
    # The demo clone, the demo remote and the state dir are ignored: nothing new to commit.
    assert _untracked(walk.clone, walk.env) == before


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser, by name."""
    [commands] = [a for a in build_parser()._actions
                  if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_command_flag_and_variable_the_readme_names_is_the_clis() -> None:
    """What the README shows but does not run (the commands table, the flags): each
    `reconciler SUBCOMMAND` is one, each `--flag` belongs to it (or, alone, to some
    subcommand), and each RECONCILER_ variable is read by a flag."""
    parsers = _parsers()
    spans = re.findall(r"`([^`\n]+)`", README.read_text())
    every_flag = {flag for p in parsers.values() for flag in p._option_string_actions}
    helps = " ".join(" ".join(p.format_help().split()) for p in parsers.values())
    unknown: list[str] = []
    for span in spans:
        words = span.replace("\\|", "|").split()
        flags = {w.strip("[]").split("=")[0] for w in words if w.strip("[").startswith("--")}
        if words[0] in ("reconciler", ".venv/bin/reconciler"):
            parser = parsers.get(words[1]) if len(words) > 1 else None
            known = set(parser._option_string_actions) if parser else set()
            unknown += [f"{span}: {flag}" for flag in flags - known]
            if len(words) > 1 and parser is None:
                unknown.append(f"{span}: no command {words[1]}")
        elif words[0].startswith("--"):
            unknown += [f"{span}: {flag}" for flag in flags - every_flag]
        unknown += [f"{span}: {var}" for var in re.findall(r"\bRECONCILER_[A-Z_]+", span)
                    if f"[env {var}]" not in helps]
    assert not unknown
