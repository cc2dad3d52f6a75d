"""What no run is given, whatever a policy allows (pure): the daemon's own credentials Secret,
the daemon's own service account, another stack's account (which reaches that stack's state),
and a password over a scheme that would send it in the clear.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import assert_never

from reconciler.declarations.entries import Entry
from reconciler.declarations.models import StackSpec, TaskSpec
from reconciler.executors.kubernetes import stackaccess
from reconciler.executors.kubernetes.clone import is_ssh_url
from reconciler.executors.kubernetes.taskfiles import ManifestError

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def check_entry(entry: Entry, *, instance: str, own_secret: str | None,
                own_account: str | None) -> None:
    _check_secrets(entry, own_secret)
    _check_account(entry, instance=instance, own_account=own_account)


def _check_secrets(entry: Entry, own: str | None) -> None:
    spec = entry.spec
    named = {ref.secret: f"secretEnv.{key}" for key, ref in spec.secret_env.items()}
    repository = spec.repository_to_clone()
    if repository is not None and repository.credentials_secret is not None:
        named[repository.credentials_secret] = "repository.credentialsSecret"
        if not (is_ssh_url(repository.url) or repository.url.lower().startswith("https://")):
            raise ManifestError(
                f"{entry.id}: repository.credentialsSecret: credentials are sent over "
                f"https or ssh only, and {repository.url} is neither")
    if own and own in named:
        raise ManifestError(
            f"{entry.id}: {named[own]}: {own} holds the daemon's own credentials, which no "
            "run is given")


def _check_account(entry: Entry, *, instance: str, own_account: str | None) -> None:
    spec = entry.spec
    account = spec.service_account_name or entry.defaults.service_account_name
    if account is None:
        return
    if own_account and account == own_account:
        raise ManifestError(
            f"{entry.id}: serviceAccountName: {account} is the daemon's own service account, "
            "which no run is given")
    match spec:
        case StackSpec():
            # A stack's own account is the one made for it to reach its state.
            mine = account == stackaccess.own_account_name(entry, instance=instance)
        case TaskSpec():
            mine = False
        case _:
            assert_never(spec)
    if account.startswith(stackaccess.account_prefix(instance)) and not mine:
        raise ManifestError(
            f"{entry.id}: serviceAccountName: {account} is the account of another stack, "
            "which reaches that stack's state")


def token_account(token_file: Path = IN_CLUSTER_TOKEN) -> str | None:
    """The service account a pod's token belongs to (its `sub` claim), or None outside a
    cluster. The claims are read, not verified: they only name the daemon's own account."""
    try:
        with token_file.open(encoding="ascii") as token:
            payload = token.read().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError, binascii.Error, UnicodeError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    parts = str(subject or "").split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return parts[3]
    return None
