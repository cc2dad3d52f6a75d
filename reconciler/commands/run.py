"""`reconciler run`: the daemon, or one reconcile to completion with `--once`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from types import FrameType

from loguru import logger

from reconciler.commands.wiring import (
    EXIT_CONFIG,
    ConfigError,
    build_executor,
    policy_check,
    settings_from_args,
    state_dir_problem,
)
from reconciler.daemon.core import Daemon
from reconciler.daemon.loops import liveness, run_once, serve
from reconciler.executors import registry
from reconciler.executors.registry import ExecutorConfigError
from reconciler.http.api import Api, Control
from reconciler.http.server import Server
from reconciler.logs import setup_logging
from reconciler.metrics import Metrics
from reconciler.ports import Elector
from reconciler.scheduler import Request, Scheduler, Wakeup, WorkQueue
from reconciler.settings import Settings
from reconciler.source.errors import SourceConfigurationError, SourceError
from reconciler.types import EntryId, Operation, RunId


def _fail(message: str, code: int = EXIT_CONFIG) -> int:
    print(f"reconciler: {message}", file=sys.stderr)
    return code


def build_daemon(settings: Settings, metrics: Metrics,
                 is_leader: Callable[[], bool] = lambda: True) -> Daemon:
    """The daemon's parts from settings. Raises ConfigError or SourceError."""
    from reconciler.declarations.loader import DeclarationLoader
    from reconciler.policy.apply import PolicyLoader
    from reconciler.source.gitsource import GitSource
    from reconciler.source.signatures import SignatureCheck
    from reconciler.source.verdicts import SignatureConfigError

    problem = state_dir_problem(settings.state_dir)
    if problem:
        raise ConfigError(problem)
    check = policy_check(settings)
    commits = check.policy.spec.commits
    signatures = SignatureCheck(mode=commits.verify, allowed_signers=commits.allowed_signers,
                                keyring=commits.keyring)
    source = GitSource(
        settings.repo, settings.state_dir, branch=settings.branch,
        status_branch=settings.status_branch, credentials=settings.credentials,
        on_push_conflict=lambda: metrics.observe_status_push("conflict"),
    )
    loader = PolicyLoader(DeclarationLoader(path=settings.path,
                                            cache_file=settings.state_dir / "declarations.cache"),
                          check)
    executor = build_executor(settings, source)
    try:
        return Daemon(source=source, loader=loader, executor=executor, metrics=metrics,
                      interval=timedelta(seconds=settings.interval_seconds),
                      is_leader=is_leader, signatures=signatures,
                      state_dir=settings.state_dir)
    except SignatureConfigError as err:  # a trust file that cannot be used
        executor.close()
        raise ConfigError(f"--policy {settings.policy_file}: spec.commits: {err}") from None


def run(args: argparse.Namespace) -> int:
    # Handlers first: a SIGTERM while starting (a rollout) ends cleanly, never mid-write.
    stop = threading.Event()
    _on_signals(stop)
    try:
        settings = settings_from_args(args)
        setup_logging(settings.log_format, settings.log_level)
    except (ConfigError, ValueError) as err:
        return _fail(str(err))
    metrics = Metrics()
    work = WorkQueue()
    try:
        elector = _elector(settings, metrics, work)
        daemon = build_daemon(settings, metrics,
                              (lambda: elector.is_leader) if elector else (lambda: True))
    except (ConfigError, SourceConfigurationError) as err:
        return _fail(str(err))
    try:
        # Fail fast, with one line, on a wrong URL, bad credentials or an unknown host key.
        daemon.source.head()
    except SourceConfigurationError as err:
        daemon.executor.close()
        return _fail(str(err))
    except SourceError as err:
        if settings.once:
            daemon.executor.close()
            return _fail(str(err), 1)
        # Unreachable is not misconfigured: serve, back off and retry rather than crash-loop.
        logger.warning("remote not reachable yet, retrying: {}", err)
    try:
        if settings.once:
            return _run_once(daemon, stop)
        return _serve(daemon, settings, metrics, work=work, elector=elector, stop=stop)
    finally:
        daemon.flush_status()  # still leading: what the last cycles held back is pushed
        if elector is not None:
            elector.stop()
        daemon.executor.close()


def _run_once(daemon: Daemon, stop: threading.Event) -> int:
    try:
        code = run_once(daemon, stop=stop)
    except RuntimeError as err:
        return _fail(str(err), 1)
    logger.info("done: exit {}", code)
    return code


def _elector(settings: Settings, metrics: Metrics, work: WorkQueue) -> Elector | None:
    """With --leader-elect, a Lease decides which replica runs cycles; otherwise this one."""
    if not settings.leader_elect or settings.once:
        metrics.set_leader(settings.leader_election_id, True)
        return None
    adapter = registry.adapter(settings.executor)
    if not adapter.elects_leaders:
        raise ConfigError(f"--leader-elect needs --executor {' or '.join(registry.electing())} "
                          "(the Lease lives there)")

    def changed(leading: bool) -> None:
        metrics.set_leader(elector.identity, leading)
        logger.info("{} leadership of {}", "took" if leading else "lost",
                    settings.leader_election_id)
        work.put(Wakeup("leadership", fetch=True, urgent=True))

    try:
        elector = adapter.elector(settings, changed)
    except ExecutorConfigError as err:
        raise ConfigError(str(err)) from None
    metrics.set_leader(elector.identity, False)
    elector.start()
    return elector


def _serve(daemon: Daemon, settings: Settings, metrics: Metrics, *, work: WorkQueue,
           elector: Elector | None, stop: threading.Event) -> int:
    scheduler = Scheduler(work, interval=timedelta(seconds=settings.interval_seconds))

    def ready() -> tuple[bool, str]:
        if not daemon.synced.is_set():
            return False, "waiting for the first successful sync"
        role = ""
        if elector is not None:
            role = "; leading" if elector.is_leader else f"; standby, leader {elector.holder}"
        return True, f"synced at {daemon.revision or 'unknown'}{role}"

    alive = liveness(daemon, limit_seconds=settings.liveness_timeout_seconds, stop=stop)
    server = Server.from_settings(
        settings, metrics=metrics, health=alive, ready=ready,
        on_trigger=lambda reason: work.put(Wakeup(reason, urgent=True)),
        api=_api(daemon, settings, work))
    if server is not None:
        try:
            server.start()
        except OSError as err:
            return _fail(f"--listen {settings.listen}: {err.strerror or err}")
        logger.info("serving metrics and webhooks on {}", server.url)
    logger.info("reconciling {} branch {} every {:g}s (status on {})", daemon.source.url,
                settings.branch, settings.interval_seconds, settings.status_branch)
    try:
        serve(daemon, work, scheduler, stop)
    finally:
        if server is not None:
            server.stop()
    logger.info("stopped")
    return 0


def _api(daemon: Daemon, settings: Settings, work: WorkQueue) -> Api | None:
    if settings.api_token is None:
        return None

    def submit(entry_id: EntryId, operation: Operation) -> Future[RunId]:
        started: Future[RunId] = Future()
        work.put(Wakeup(f"api: {operation.value} {entry_id}", fetch=False,
                        request=Request(entry_id, operation, started)))
        return started

    return Api(settings.api_token.get_secret_value(), Control(
        records=lambda: dict(daemon.records), declared=lambda: daemon.desired.entries,
        submit=submit, logs=daemon.executor.logs, in_flight=daemon.in_flight))


def _on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        logger.info("received {}: finishing the current cycle", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
