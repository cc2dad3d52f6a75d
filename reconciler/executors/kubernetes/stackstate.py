"""The entry point of a stack pod: the stack's state around the stack runner.

A pod's filesystem is gone when its run ends, so a module that declares no backend cannot keep
its state where the local executor keeps it. The engine's own `kubernetes` backend would, but
it lists every Secret of the namespace, which no stack pod may do. So this entry point keeps the
state itself, with the only access its account has (`stackaccess`): it takes the stack's lock
(its Lease), loads the state from the stack's Secret into the file the runner's local backend
uses, runs the runner, writes the state back when it changed, and releases the lock. The state
is also written back while the runner works, so a run killed midway keeps what it applied.
A module with a backend of its own (S3, GCS, HCP Terraform, ...) is left to it.

    python3 -m reconciler.programs.pod_entry --state-secret S --state-lease L \\
        --state-file FILE -- RUNNER-ARGS

(`programs/pod_entry.py` parses that; what it does is here.)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from reconciler.executors.kubernetes.client import KubernetesConfigError, connect, message_of
from reconciler.executors.kubernetes.statestore import StateLockedError, StateStore
from reconciler.stacks import declares_backend

RUNNER_MODULE = "reconciler.stackrun"
SYNC_SECONDS = 15.0
"""How often the state is written back while the runner works."""


def _say(message: str) -> None:
    print(f"state: {message}", flush=True)


class _Synced:
    """Writes the state file back to the Secret whenever it differs from what is stored."""

    def __init__(self, store: StateStore, path: Path, stored: bytes | None) -> None:
        self.store, self.path, self.stored = store, path, stored
        self._lock = threading.Lock()

    def sync(self) -> None:
        with self._lock:
            try:
                with self.path.open("rb") as state:
                    current = state.read()
            except FileNotFoundError:
                return
            if current and current != self.stored and _complete(current):
                self.store.save(current)
                self.stored = current


def _complete(state: bytes) -> bool:
    """The engine rewrites its state file in place: a read in the middle of a write sees a
    truncated document, which must never replace the stored state."""
    try:
        json.loads(state)
    except ValueError:
        return False
    return True


def _run_runner(runner: list[str], synced: _Synced) -> int:
    child = subprocess.Popen([sys.executable, "-m", RUNNER_MODULE, *runner])

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    while True:
        try:
            return child.wait(timeout=SYNC_SECONDS)
        except subprocess.TimeoutExpired:
            try:
                synced.sync()
            except Exception as err:
                _say(f"cannot write the state back yet: {message_of(err)}")


def _with_state(args: argparse.Namespace, namespace: str, runner: list[str]) -> int:
    try:
        api = connect()
    except KubernetesConfigError as err:
        _say(str(err))
        return 2
    store = StateStore(api, namespace=namespace, secret=args.state_secret,
                       lease=args.state_lease, holder=os.environ.get("HOSTNAME") or "stack-run")
    operation = runner[0] if runner else "run"
    try:
        store.lock(operation)
    except StateLockedError as err:
        _say(f"Secret {args.state_secret} in namespace {namespace}: {err}")
        return 1
    except Exception as err:
        _say(f"cannot lock Lease {args.state_lease} in namespace {namespace}: "
             f"{message_of(err)}")
        return 1
    try:
        return _locked(store, args, namespace, runner)
    finally:
        try:
            store.unlock()
        except Exception as err:
            _say(f"cannot release Lease {args.state_lease}: {message_of(err)}")


def _locked(store: StateStore, args: argparse.Namespace, namespace: str,
            runner: list[str]) -> int:
    path: Path = args.state_file
    try:
        stored = store.load()
    except Exception as err:
        _say(f"cannot read Secret {args.state_secret} in namespace {namespace}: "
             f"{message_of(err)}")
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    if stored:
        path.write_bytes(stored)
    _say(f"Secret {args.state_secret} in namespace {namespace}, locked by Lease "
         f"{args.state_lease}")
    synced = _Synced(store, path, stored)
    code = _run_runner(runner, synced)
    try:
        synced.sync()
    except Exception as err:
        _say(f"the new state could not be written to Secret {args.state_secret}: "
             f"{message_of(err)}; it is lost with this pod")
        return code or 1
    return code


def run_stack_pod(args: argparse.Namespace, namespace: str, runner: list[str]) -> int:
    """The stack runner with `runner` as its arguments, its state kept in the Secret and Lease
    `args` name in `namespace`, unless the module declares a backend of its own."""
    if declares_backend(Path.cwd()):
        # Replace this process: the runner gets the pod's signals and its exit code is the pod's.
        os.execv(sys.executable, [sys.executable, "-m", RUNNER_MODULE, *runner])  # noqa: S606
    return _with_state(args, namespace, runner)
