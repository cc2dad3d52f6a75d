"""The Kubernetes executor as the command line finds it (`executors/registry.py`): its flags,
its settings, how it and its leader elector are built and where `reconciler logs` finds its runs.

Loaded for every `--help`, so it imports no Kubernetes client; the executor modules are imported
when used.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from reconciler.executors.base import Executor, Workspace
from reconciler.executors.registry import (
    EngineFallback,
    ExecutorConfigError,
    FlagAdder,
    FlagSet,
    LatestLog,
    LeaderElector,
)
from reconciler.settings import Settings
from reconciler.types import EntryId


class KubernetesSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = "default"
    kubeconfig: Path | None = None
    source_credentials_secret: str | None = Field(
        default=None, description="Kubernetes Secret stack pods clone the repository with."
    )
    runner_image: str | None = Field(
        default=None, description="Image of stack pods whose Defaults name none."
    )
    engine_fallback: EngineFallback | None = Field(
        default=None, description="The engine stack pods run when the declared one is not in "
        "their image (`--engine-fallback`)."
    )


def _require_client() -> None:
    """The Kubernetes client is an extra (`reconciler[kubernetes]`), so that PR checks install
    light: without it, say what to install rather than fail on an import."""
    if importlib.util.find_spec("kubernetes") is None:
        raise ExecutorConfigError(
            "--executor kubernetes needs the Kubernetes client, which this installation lacks: "
            "pip install 'reconciler[kubernetes]' (the daemon image has it)")


class KubernetesAdapter:
    name = "kubernetes"
    places_in_namespaces = True
    elects_leaders = True

    def add_flags(self, parser: argparse.ArgumentParser, flag: FlagAdder, where: FlagSet) -> None:
        if where is FlagSet.DAEMON_RUNS:
            flag(parser, "--namespace", default="default", help="Kubernetes namespace for runs.")
            flag(parser, "--kubeconfig",
                 help="Kubeconfig file; default: in-cluster, then ~/.kube/config.")
            flag(parser, "--source-credentials-secret",
                 help="Kubernetes: Secret (username/password or ssh-privatekey/known_hosts) that "
                 "stack pods clone the repository with.")
            flag(parser, "--runner-image",
                 help="Kubernetes: image of stack pods (reconciler plus the engine) when Defaults "
                 "name none; default reconciler:<version>.")
        elif where is FlagSet.POLICY:
            flag(parser, "--namespace", default="default",
                 help="With --policy: the daemon's --namespace.")
            flag(parser, "--source-credentials-secret",
                 help="With --policy: the daemon's flag of that name.")
        elif where is FlagSet.LOGS:
            flag(parser, "--namespace", default="default")
            flag(parser, "--kubeconfig")

    def settings(self, args: argparse.Namespace) -> KubernetesSettings:
        return KubernetesSettings(
            namespace=args.namespace,
            kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
            source_credentials_secret=args.source_credentials_secret or None,
            runner_image=args.runner_image or None,
            engine_fallback=args.engine_fallback or None,
        )

    def policy_namespace(self, settings: Settings) -> str:
        return settings.of(KubernetesSettings).namespace

    def daemon_secrets(self, settings: Settings) -> tuple[str, ...]:
        secret = settings.of(KubernetesSettings).source_credentials_secret
        return (secret,) if secret else ()

    def build(self, settings: Settings, workspace: Workspace) -> Executor:
        _require_client()
        from reconciler.executors.kubernetes.client import KubernetesConfigError
        from reconciler.executors.kubernetes.executor import KubernetesExecutor

        try:
            return KubernetesExecutor.from_settings(settings)
        except KubernetesConfigError as err:
            raise ExecutorConfigError(str(err)) from None

    def elector(self, settings: Settings, on_change: Callable[[bool], None]) -> LeaderElector:
        _require_client()
        from reconciler.executors.kubernetes.client import KubernetesConfigError
        from reconciler.executors.kubernetes.leader import LeaderElector as Lease

        try:
            return Lease.from_settings(settings, on_change=on_change)
        except KubernetesConfigError as err:
            raise ExecutorConfigError(str(err)) from None

    def foreign_state(self, settings: Settings) -> str | None:
        return None  # runs and stack state live in the cluster, whoever looks

    def latest_log(self, entry: EntryId, args: argparse.Namespace) -> LatestLog:
        _require_client()
        from reconciler.executors.kubernetes.lastlog import latest_log

        text = latest_log(entry, namespace=args.namespace, kubeconfig=args.kubeconfig)
        return LatestLog(text, f"namespace {args.namespace}")


ADAPTER = KubernetesAdapter()
