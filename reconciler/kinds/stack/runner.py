"""The stack runner: one stack operation in the module folder it is started in.

    python -m reconciler.programs.stack_runner OPERATION --stack NAME --engine opentofu \
        --state-dir DIR ...

It finds the engine, runs `init`, `plan -out`, `show -json` and, when due, `apply` of that saved
plan, streams the engine's output to stdout (the run log) with secret values masked and output
values left out, and prints one last line `::reconciler-result:: {json}` (`StackResult`). The
same program runs under the local executor and inside a Kubernetes pod, so everything it needs
comes from its arguments and environment. Exit 0 when the operation worked (a drift check that
found drift included), 1 when it failed, 2 on a usage error. How the engine's process is
started, signalled and read is `kinds.stack.engine`; the program's entry point is
`reconciler.programs.stack_runner`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TextIO

from reconciler.kinds.stack.engine import Engine, Interrupted, Log, StackRunError, forward_signals
from reconciler.kinds.stack.files import make_private, private_files
from reconciler.kinds.stack.launch import (
    FALLBACK_FLAG,
    STACK_OPERATIONS,
    EngineBinary,
    EngineNotFoundError,
    check_engine,
    declares_backend,
    find_engine,
    stack_dir,
    state_file,
)
from reconciler.kinds.stack.summaries import PlanSummary, summarize_plan
from reconciler.redact import Redactor
from reconciler.runs import RESULT_MARKER, StackResult
from reconciler.types import DriftState, Operation

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
    p.add_argument(FALLBACK_FLAG, choices=["opentofu", "terraform"], default=None,
                   help="The engine to run when the declared one is not installed; "
                   "default: none, the run fails.")
    p.add_argument("--state-dir", required=True, type=Path, help="Holds stacks/NAME/.")
    p.add_argument("--vars", type=_json_object, default={}, help="Variables: a JSON object.")
    p.add_argument("--var-file", action="append", default=[], help="Relative to the module.")
    p.add_argument("--secret-env", action="append", default=[],
                   help="Name of a variable whose value is masked in the output.")
    p.add_argument("--lock-timeout", type=int, default=0, help="Seconds to wait for a lock.")
    p.add_argument("--plan-only", action="store_true", help="Never apply (apply: plan).")
    return p


def run(args: Sequence[str], *, out: TextIO, workdir: Path, environ: Mapping[str, str]) -> int:
    """Run one operation in `workdir` (the module folder); return the exit code."""
    args = list(args)
    if args[:1] == ["--"]:
        args = args[1:]
    options = _parser().parse_args(args)
    env = dict(environ)
    secrets = [env[n] for n in options.secret_env if env.get(n)]
    # Masked as the daemon masks them (`redact.secret_forms`): escaped, encoded, line by line.
    redact = Redactor(secrets)
    log = Log(out, redact)
    runner = _Runner(options, log=log, module=workdir.absolute(), environ=env)
    with forward_signals(runner.interrupt):
        result = runner.run()
    log(f"{RESULT_MARKER} {json.dumps(result.to_result(), sort_keys=True)}")
    return 1 if result.error else 0


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
            if isinstance(err, EngineNotFoundError) and err.searched is not None:
                self.log(f"looked on PATH={err.searched}")
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
        binary = find_engine(options.engine, options.engine_bin,
                             fallback=options.engine_fallback)
        folder = stack_dir(options.state_dir.absolute(), options.stack)
        with private_files(), TemporaryDirectory(prefix="reconciler-stack-") as scratch:
            make_private(folder)
            with self._stack_lock(folder / "run.lock"):
                self._in_scratch(binary, folder, Path(scratch))

    def _in_scratch(self, binary: EngineBinary, folder: Path, scratch: Path) -> None:
        options = self.options
        config = scratch / "empty.tfrc"
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
        found = self.engine.identify()
        notice = check_engine(
            options.engine, found.name, found.version, program=Path(binary.path).name,
            fallback=options.engine_fallback, configured=options.engine_bin,
        )
        if notice is not None:
            self.log(notice)
        self.log(found.line)
        # The engine that runs, which with a fallback is not the declared one.
        self._update(engine=found.name, version=found.version)
        vars_file = scratch / "reconciler-vars.tfvars.json"
        vars_file.write_text(json.dumps(options.vars))
        plan_args = [*(f"-var-file={f}" for f in options.var_file), f"-var-file={vars_file}"]
        with self._state_backend(options.state_dir.absolute()):
            self._init()
            self._operate(scratch / "stack.tfplan", plan_args)

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
