"""The policy and the daemon's identity from flags: shared by `run`, `validate` and `render`,
so a pull request check given the daemon's flags (or its `RECONCILER_*` variables) shows
exactly the denials the daemon would.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Iterable
from pathlib import Path

from reconciler.policy.apply import PolicyCheck
from reconciler.policy.file import load_policy
from reconciler.policy.rules import DaemonIdentity

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
STATE_SECRETS = "tfstate-*"
"""Where the engine's `kubernetes` backend keeps every stack's state (and its secrets)."""


def names(value: str | None) -> tuple[str, ...]:
    """A comma-separated flag value as a list of names."""
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


def token_account(token_file: Path) -> str | None:
    """The service account a mounted token belongs to (the `sub` claim of its JWT,
    `system:serviceaccount:NAMESPACE:NAME`); None when there is no readable token. The token
    is not verified: it is the pod's own, read only to learn its name."""
    try:
        payload = token_file.read_text(encoding="ascii").strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError, UnicodeDecodeError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if isinstance(subject, str) and subject.startswith("system:serviceaccount:"):
        return subject.rsplit(":", 1)[-1] or None
    return None


def daemon_identity(
    *,
    executor: str,
    namespace: str,
    service_account: str | None,
    reserved_service_accounts: Iterable[str] = (),
    secrets: Iterable[str | None] = (),
    token_file: Path | None = None,
) -> DaemonIdentity:
    """What no declaration may be given. `secrets` are the daemon's credential Secrets (and
    globs of more); stacks' state Secrets are always among them."""
    accounts = {a for a in (service_account, *reserved_service_accounts) if a}
    if token_file is not None:
        own = token_account(token_file)
        if own:
            accounts.add(own)
    return DaemonIdentity(
        namespace=namespace,
        kubernetes=executor == "kubernetes",
        service_accounts=frozenset(accounts),
        secrets=frozenset({STATE_SECRETS, *(s for s in secrets if s)}),
    )


def identity_from_args(
    args: argparse.Namespace, *, executor: str | None = None, namespace: str | None = None
) -> DaemonIdentity:
    return daemon_identity(
        executor=str(executor or getattr(args, "executor", "local")),
        namespace=str(namespace or getattr(args, "namespace", None) or "default"),
        service_account=args.service_account,
        reserved_service_accounts=names(args.reserved_service_accounts),
        secrets=(args.credentials_secret, getattr(args, "source_credentials_secret", None),
                 *names(args.reserved_secrets)),
    )


def check_from_args(
    args: argparse.Namespace, *, executor: str | None = None, namespace: str | None = None
) -> PolicyCheck | None:
    """The check `--policy` asks for; None without it. Raises PolicyError."""
    if not args.policy:
        return None
    policy = load_policy(Path(args.policy))
    return PolicyCheck(policy, identity_from_args(args, executor=executor, namespace=namespace))

