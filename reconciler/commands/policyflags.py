"""The policy and the daemon's identity from flags: shared by `run`, `validate` and `render`,
so a pull request check given the daemon's flags (or its `RECONCILER_*` variables) shows
exactly the denials the daemon would.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from reconciler.executors import registry
from reconciler.executors.kubernetes.guards import IN_CLUSTER_TOKEN, token_account
from reconciler.executors.kubernetes.stackaccess import account_prefix
from reconciler.policy.apply import PolicyCheck
from reconciler.policy.file import load_policy
from reconciler.policy.rules import DaemonIdentity

__all__ = ["IN_CLUSTER_TOKEN", "daemon_identity", "identity_from_args", "names",
           "token_account"]

STATE_SECRETS = "tfstate-*"
"""Where the engine's `kubernetes` backend keeps every stack's state (and its secrets)."""


def names(value: str | None) -> tuple[str, ...]:
    """A comma-separated flag value as a list of names."""
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


def daemon_identity(
    *,
    executor: str,
    namespace: str,
    service_account: str | None,
    reserved_service_accounts: Iterable[str] = (),
    secrets: Iterable[str | None] = (),
    token_file: Path | None = None,
    instance: str = "reconciler",
) -> DaemonIdentity:
    """What no declaration may be given. `secrets` are the daemon's credential Secrets (and
    globs of more); stacks' state Secrets are always among them, and so are the accounts the
    daemon makes for stacks (each reaches its stack's state)."""
    accounts = {a for a in (service_account, *reserved_service_accounts) if a}
    accounts.add(account_prefix(instance) + "*")
    if token_file is not None:
        own = token_account(token_file)
        if own:
            accounts.add(own)
    return DaemonIdentity(
        namespace=namespace,
        kubernetes=registry.adapter(executor).places_in_namespaces,
        service_accounts=frozenset(accounts),
        secrets=frozenset({STATE_SECRETS, *(s for s in secrets if s)}),
    )


def identity_from_args(
    args: argparse.Namespace, *, executor: str | None = None, namespace: str | None = None
) -> DaemonIdentity:
    return daemon_identity(
        executor=str(executor or getattr(args, "executor", registry.DEFAULT)),
        namespace=str(namespace or getattr(args, "namespace", None) or "default"),
        service_account=args.service_account,
        reserved_service_accounts=names(args.reserved_service_accounts),
        secrets=(args.credentials_secret, getattr(args, "source_credentials_secret", None),
                 *names(args.reserved_secrets)),
        instance=str(getattr(args, "leader_election_id", None) or "reconciler"),
    )


def check_from_args(
    args: argparse.Namespace, *, executor: str | None = None, namespace: str | None = None
) -> PolicyCheck | None:
    """The check `--policy` asks for; None without it. Raises PolicyError."""
    if not args.policy:
        return None
    policy = load_policy(Path(args.policy))
    return PolicyCheck(policy, identity_from_args(args, executor=executor, namespace=namespace))

