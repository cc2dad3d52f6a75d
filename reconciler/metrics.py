"""Every Prometheus metric of the daemon, defined once (DESIGN §6).

A `Metrics` owns its own `CollectorRegistry`, so two daemons in one process (and tests) never
share series. The daemon calls the typed methods below; nothing else creates metrics.

Label vocabulary (what alert rules and dashboards may rely on):

- `kind`: `task` or `stack` (the prefix of entry ids).
- `phase`: a `Phase` value as written to status files (`Succeeded`, `Failed`, ...).
- `trigger`: a `Trigger` value; runs `result`: a finished `RunState` value.
- drift checks `result`: `InSync`, `Drifted` or `Error`.
- fetch `result`: `success` or `error`; status push `result`: `success`, `conflict` (the
  branch moved; rebuilt and retried) or `error`.
- webhook `provider`: `github`, `gitlab`, `gitea` or `unknown`; `result`: see WEBHOOK_RESULTS.
- commit verification `result`: see COMMIT_VERIFICATION_RESULTS.

Free-text label values (names, branch, commit, identity) pass through the process-wide redactor
so a secret can never become a label.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Literal, TypeVar, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from reconciler import __version__
from reconciler.redact import redactor
from reconciler.types import ENTRY_KINDS, DriftState, Kind, Phase, RunState, Trigger

PREFIX = "reconciler_"

FetchResult = Literal["success", "error"]
PushResult = Literal["success", "conflict", "error"]
WebhookProvider = Literal["github", "gitlab", "gitea", "unknown"]
WebhookResult = Literal[
    "accepted",  # valid and relevant: a cycle was triggered
    "ignored",  # valid but unrelated (a ping, another branch, another event)
    "unauthorized",  # missing or wrong signature or token
    "disabled",  # no webhook secret configured
    "invalid",  # malformed request: no length, body too large
    "error",  # the trigger callback failed
]
CommitVerificationResult = Literal[
    "verified",  # signed by an allowed signer: reconciled
    "unsigned",  # no signature at all
    "untrusted",  # a good signature, but not by a key allowed for it (unknown, expired, revoked)
    "invalid",  # the signature does not match the commit, or is for another namespace or format
    "error",  # the verifier could not run; tried again at the next poll
]
FETCH_RESULTS: tuple[str, ...] = get_args(FetchResult)
COMMIT_VERIFICATION_RESULTS: tuple[str, ...] = get_args(CommitVerificationResult)
PUSH_RESULTS: tuple[str, ...] = get_args(PushResult)
WEBHOOK_PROVIDERS: tuple[str, ...] = get_args(WebhookProvider)
WEBHOOK_RESULTS: tuple[str, ...] = get_args(WebhookResult)
RUN_KINDS: tuple[Kind, ...] = ENTRY_KINDS
RUN_RESULTS: tuple[RunState, ...] = tuple(s for s in RunState if s.finished)
DRIFT_RESULTS: tuple[DriftState, ...] = (DriftState.IN_SYNC, DriftState.DRIFTED, DriftState.ERROR)

# Fetches and pushes are milliseconds on a healthy remote and seconds on a slow one.
FETCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Runs are tasks and terraform applies: seconds to hours.
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800)


def kind_label(kind: Kind | str) -> str:
    """`Kind.TASK` → `task`; strings already in label form pass through lower-cased."""
    return kind.prefix if isinstance(kind, Kind) else str(kind).lower()


def _label(value: str) -> str:
    return redactor(str(value))


class _SnapshotCollector:
    """Series that describe the current state of every entry, kept per entry: an update
    touches only the entries given, and a scrape copies the whole under the lock, so it sees
    either the state before an update or after it, never a mix. Names are redacted when
    scraped (a secret learned since is masked too)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}
        # stack → (drifted, since epoch seconds or None)
        self._drift: dict[str, tuple[bool, float | None]] = {}

    def set_phases(self, phases: Mapping[tuple[str, str], str],
                   only: Collection[tuple[str, str]] | None) -> None:
        with self._lock:
            _merge(self._phases, phases, only)

    def drift(self, stacks: Iterable[str]) -> dict[str, tuple[bool, float | None]]:
        with self._lock:
            return {s: self._drift[s] for s in stacks if s in self._drift}

    def update_drift(self, drift: Mapping[str, tuple[bool, float | None]],
                     only: Collection[str] | None) -> None:
        with self._lock:
            _merge(self._drift, drift, only)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            phases, drift = dict(self._phases), dict(self._drift)
        now = self._clock()
        family = GaugeMetricFamily(
            PREFIX + "entry_phase",
            "1 for the current phase of each declared entry.",
            labels=["kind", "name", "phase"],
        )
        labelled = {(kind, _label(name)): phase for (kind, name), phase in phases.items()}
        for (kind, name), phase in sorted(labelled.items()):
            family.add_metric([kind, name, phase], 1)
        yield family
        detected = GaugeMetricFamily(
            PREFIX + "drift_detected",
            "1 when the last drift plan of a stack found changes, 0 when in sync.",
            labels=["stack"],
        )
        age = GaugeMetricFamily(
            PREFIX + "drift_age_seconds",
            "Seconds since the current drift of a stack was first detected (0 when in sync).",
            labels=["stack"],
        )
        for stack, (drifted, since) in sorted({_label(s): d for s, d in drift.items()}.items()):
            detected.add_metric([stack], 1 if drifted else 0)
            age.add_metric([stack], max(0.0, now - since) if drifted and since else 0.0)
        yield detected
        yield age


K = TypeVar("K")
V = TypeVar("V")


def _merge(into: dict[K, V], values: Mapping[K, V], only: Collection[K] | None) -> None:
    """`values` in `into`: all of it (only None), or for the keys `only`, those missing from
    `values` removed."""
    if only is None:
        into.clear()
        into.update(values)
        return
    for key in only:
        if key in values:
            into[key] = values[key]
        else:
            into.pop(key, None)


class Metrics:
    """The daemon's metrics and their registry. Thread-safe: updated by the cycle worker,
    read by HTTP scrapes."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        version: str = __version__,
        process_metrics: bool = True,
    ) -> None:
        # `_created` series double the output and add nothing: every counter starts at 0 here.
        # The switch is process-wide in prometheus_client and read when a metric is created.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._clock = clock
        self._lock = threading.Lock()
        self._exported: dict[Gauge, set[tuple[str, ...]]] = {}
        r = self.registry
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self._define_source_metrics(r)
        self._define_run_metrics(r)
        self.build_info.labels(_label(version)).set(1)
        self._snapshot = _SnapshotCollector(clock)
        r.register(self._snapshot)
        self._initialise()

    def _define_source_metrics(self, r: CollectorRegistry) -> None:
        self.fetches = Counter(
            PREFIX + "source_fetch_total", "Polls of the Git remote.", ["result"], registry=r
        )
        self.fetch_seconds = Histogram(
            PREFIX + "source_fetch_duration_seconds",
            "Duration of a poll and, when the head moved, fetch of the Git remote.",
            buckets=FETCH_BUCKETS,
            registry=r,
        )
        self.revision = Gauge(
            PREFIX + "source_revision_info",
            "1 for the branch and commit the daemon last reconciled.",
            ["branch", "commit"],
            registry=r,
        )
        self.last_sync = Gauge(
            PREFIX + "last_sync_timestamp_seconds",
            "Unix time of the last reconcile cycle that loaded the newest commit.",
            registry=r,
        )
        self.declarations = Gauge(
            PREFIX + "declarations",
            "Declared entries at the reconciled commit, by kind and validity.",
            ["kind", "valid"],
            registry=r,
        )
        self.loads = Counter(
            PREFIX + "declarations_load_total",
            "Loads of a fetched commit's declarations; an error leaves the previous commit in "
            "force and is retried (bad files are not errors here: they are reported per file).",
            ["result"],
            registry=r,
        )
        self.commit_verifications = Counter(
            PREFIX + "commit_verification_total",
            "New heads of the tracked branch checked for a signature by an allowed signer.",
            ["result"],
            registry=r,
        )
        self.head = Gauge(
            PREFIX + "source_head_info",
            "1 for the newest commit of the branch and its verification result (none: "
            "commits are not verified; anything but verified: refused, not reconciled).",
            ["branch", "commit", "verification"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            PREFIX + "reconcile_duration_seconds",
            "Duration of one reconcile cycle.",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )

    def _define_run_metrics(self, r: CollectorRegistry) -> None:
        self.runs = Counter(
            PREFIX + "runs_total", "Finished runs.", ["kind", "trigger", "result"], registry=r
        )
        self.runs_active = Gauge(
            PREFIX + "runs_active", "Runs pending or running now.", ["kind"], registry=r
        )
        self.run_seconds = Histogram(
            PREFIX + "run_duration_seconds",
            "Duration of finished runs, from start to finish.",
            ["kind"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.drift_checks = Counter(
            PREFIX + "drift_checks_total", "Finished drift plans.", ["result"], registry=r
        )
        self.status_pushes = Counter(
            PREFIX + "status_push_total", "Pushes of status commits.", ["result"], registry=r
        )
        self.leader = Gauge(
            PREFIX + "leader",
            "1 while this replica holds the leader Lease (always 1 without leader election).",
            ["identity"],
            registry=r,
        )
        self.webhooks = Counter(
            PREFIX + "webhook_requests_total",
            "Requests to POST /hooks/git.",
            ["provider", "result"],
            registry=r,
        )
        self.build_info = Gauge(
            PREFIX + "build_info", "1, labelled with the daemon's version.", ["version"], registry=r
        )

    def _initialise(self) -> None:
        """Create every series whose labels are known up front, at 0, so `increase()` and
        `absent()` alerts work from the first scrape instead of from the first event."""
        for result in FETCH_RESULTS:
            self.fetches.labels(result)
        for load in FETCH_RESULTS:
            self.loads.labels(load)
        for push in PUSH_RESULTS:
            self.status_pushes.labels(push)
        for verification in COMMIT_VERIFICATION_RESULTS:
            self.commit_verifications.labels(verification)
        for drift in DRIFT_RESULTS:
            self.drift_checks.labels(drift.value)
        for provider in WEBHOOK_PROVIDERS:
            for webhook in WEBHOOK_RESULTS:
                self.webhooks.labels(provider, webhook)
        for kind in RUN_KINDS:
            k = kind_label(kind)
            self.runs_active.labels(k).set(0)
            self.run_seconds.labels(k)
            for valid in ("true", "false"):
                self.declarations.labels(k, valid).set(0)
            for trigger in Trigger:
                for state in RUN_RESULTS:
                    self.runs.labels(k, trigger.value, state.value)

    def _replace(self, gauge: Gauge, values: Mapping[tuple[str, ...], float]) -> None:
        """Make `values` the only series of `gauge`. New series are set before stale ones are
        removed, so a concurrent scrape never sees the gauge empty."""
        with self._lock:
            for labels, value in values.items():
                gauge.labels(*labels).set(value)
            for labels in self._exported.get(gauge, set()) - values.keys():
                gauge.remove(*labels)
            self._exported[gauge] = set(values)

    # -- source ---------------------------------------------------------------------------

    def observe_fetch(self, result: FetchResult, seconds: float) -> None:
        self.fetches.labels(result).inc()
        self.fetch_seconds.observe(seconds)

    def observe_load(self, result: FetchResult) -> None:
        self.loads.labels(result).inc()

    def set_revision(self, branch: str, commit: str) -> None:
        """Replace the revision series: exactly one (branch, commit) pair is exported."""
        self._replace(self.revision, {(_label(branch), _label(commit)): 1})

    def mark_synced(self, at: float | None = None) -> None:
        """A cycle loaded the newest commit (Unix time `at`, default now)."""
        self.last_sync.set(self._clock() if at is None else at)

    def set_declarations(self, counts: Mapping[tuple[Kind | str, bool], int]) -> None:
        """Counts by (kind, valid). Known kinds absent from `counts` are reset to 0. An invalid
        declaration whose kind could not be read may be counted under the kind `unknown`."""
        values: dict[tuple[str, ...], float] = {(k, "true"): 0 for k in map(kind_label, RUN_KINDS)}
        values.update({(k, "false"): 0 for k in map(kind_label, RUN_KINDS)})
        for (kind, valid), count in counts.items():
            key = (_label(kind_label(kind)), "true" if valid else "false")
            values[key] = values.get(key, 0) + count
        self._replace(self.declarations, values)

    def observe_commit_verification(self, result: CommitVerificationResult) -> None:
        self.commit_verifications.labels(result).inc()

    def set_head(
        self, branch: str, commit: str, verification: CommitVerificationResult | Literal["none"]
    ) -> None:
        """Replace the head series: exactly one (branch, commit, verification) is exported."""
        self._replace(self.head, {(_label(branch), _label(commit), verification): 1})

    def observe_reconcile(self, seconds: float) -> None:
        self.reconcile_seconds.observe(seconds)

    # -- runs -----------------------------------------------------------------------------

    def run_finished(
        self, kind: Kind, trigger: Trigger, result: RunState, seconds: float | None
    ) -> None:
        """Count a finished run; `seconds` is None when it never started (e.g. bad image)."""
        if not result.finished:
            raise ValueError(f"run_finished needs a finished state, got {result.value}")
        k = kind_label(kind)
        self.runs.labels(k, trigger.value, result.value).inc()
        if seconds is not None:
            self.run_seconds.labels(k).observe(max(0.0, seconds))

    def set_runs_active(self, counts: Mapping[Kind, int]) -> None:
        """Active runs by kind; kinds absent from `counts` have none."""
        for kind in RUN_KINDS:
            self.runs_active.labels(kind_label(kind)).set(counts.get(kind, 0))

    def set_entry_phases(self, phases: Mapping[tuple[Kind, str], Phase], *,
                         only: Collection[tuple[Kind, str]] | None = None) -> None:
        """The phase of every entry now: one series at 1 per entry; entries missing from
        `phases` (removed from the repository) lose their series, as do their old phases.
        `only`: the phases of these entries, those missing from `phases` removed; the others
        keep theirs."""
        values = {(kind_label(kind), name): Phase(phase).value
                  for (kind, name), phase in phases.items()}
        keys = None if only is None else [(kind_label(kind), name) for kind, name in only]
        self._snapshot.set_phases(values, keys)

    # -- stacks ---------------------------------------------------------------------------

    def observe_drift_check(self, result: DriftState) -> None:
        if result not in DRIFT_RESULTS:
            raise ValueError(f"a finished drift check is InSync, Drifted or Error, not {result}")
        self.drift_checks.labels(result.value).inc()

    def set_drift(self, stacks: Mapping[str, tuple[DriftState, datetime | None]], *,
                  only: Collection[str] | None = None) -> None:
        """The drift of every stack now: (state, first detected at) as in its status record.

        `Drifted` exports 1 and the drift's age (from `first detected at`, or from when this
        process first saw it). `InSync` exports 0. `Error`/`Unknown` keep the last known answer:
        1 when the record still carries a first-detected time, otherwise what was exported
        before, or nothing for a stack never checked. Stacks missing from `stacks` are dropped.
        `only`: the drift of these stacks (those missing from `stacks` dropped); the others
        keep theirs.
        """
        previous = self._snapshot.drift(stacks)
        now = self._clock()
        drift: dict[str, tuple[bool, float | None]] = {}
        for stack, (state, detected_at) in stacks.items():
            since = detected_at.timestamp() if detected_at is not None else None
            before = previous.get(stack)
            if state == DriftState.DRIFTED or (since is not None and state != DriftState.IN_SYNC):
                if since is None:
                    since = before[1] if before is not None and before[0] else now
                drift[stack] = (True, since)
            elif state == DriftState.IN_SYNC:
                drift[stack] = (False, None)
            elif before is not None:
                drift[stack] = before
        self._snapshot.update_drift(drift, only)

    # -- status, leadership, webhooks -----------------------------------------------------

    def observe_status_push(self, result: PushResult) -> None:
        self.status_pushes.labels(result).inc()

    def set_leader(self, identity: str, leading: bool) -> None:
        self._replace(self.leader, {(_label(identity),): 1 if leading else 0})

    def observe_webhook(self, provider: WebhookProvider, result: WebhookResult) -> None:
        self.webhooks.labels(provider, result).inc()

    # -- exposition -----------------------------------------------------------------------

    def render(self, accept: str = "", accept_encoding: str = "") -> tuple[bytes, dict[str, str]]:
        """The registry in the format the scraper asked for (Prometheus text or OpenMetrics),
        gzipped when accepted. Returns the body and the response headers."""
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        headers = {"Content-Type": content_type}
        if "gzip" in accept_encoding.lower():
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        return body, headers
