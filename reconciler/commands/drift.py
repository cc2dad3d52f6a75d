"""`reconciler drift stack/NAME`: a drift plan now, outside its schedule, with its status written.

Exit 0 in sync, 2 drifted, 1 when the check failed: usable from a script. With the local
executor it needs the daemon's state dir (the stack's state lives there), so run it while the
daemon is stopped, or point it at a copy.
"""

from __future__ import annotations

import argparse
import sys
import threading

from reconciler.commands.run import build_daemon
from reconciler.commands.wiring import EXIT_CONFIG, ConfigError, settings_from_args
from reconciler.executors import registry
from reconciler.logs import setup_logging
from reconciler.metrics import Metrics
from reconciler.settings import Settings
from reconciler.source.errors import SourceError
from reconciler.types import DriftState, EntryId, Kind, Operation, split_entry_id


def _not_a_daemon_state_dir(settings: Settings) -> str | None:
    """Why the state dir cannot be the daemon's, or None. A plan against a state dir that is
    not the daemon's compares the stack with an empty state and would publish a false drift
    result on the status branch, so the command refuses rather than guess."""
    return registry.adapter(settings.executor).foreign_state(settings)


def run(args: argparse.Namespace) -> int:
    try:
        kind, name = split_entry_id(args.entry)
        if kind is not Kind.STACK:
            raise ValueError(f"drift plans are for stacks; {args.entry} is a task")
        settings = settings_from_args(args)
        setup_logging(settings.log_format, settings.log_level)
        problem = _not_a_daemon_state_dir(settings)
        if problem:
            raise ConfigError(problem)
        daemon = build_daemon(settings, Metrics(process_metrics=False))
    except (ConfigError, ValueError, SourceError) as err:
        print(f"reconciler: {err}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        record = daemon.run_now(EntryId(f"stack/{name}"), Operation.DRIFT,
                                stop=threading.Event())
    except (LookupError, RuntimeError) as err:
        print(f"reconciler: {err}", file=sys.stderr)
        return 1
    finally:
        daemon.executor.close()
    drift = record.drift
    if drift is None:
        print(f"stack/{name}: no drift result", file=sys.stderr)
        return 1
    counts = drift.changes
    print(f"stack/{name}: {drift.state.value} (+{counts.add} ~{counts.change} -{counts.destroy})")
    for address in drift.addresses:
        print(f"  {address}")
    if drift.message:
        print(drift.message, file=sys.stderr)
    return {DriftState.IN_SYNC: 0, DriftState.DRIFTED: 2}.get(drift.state, 1)
