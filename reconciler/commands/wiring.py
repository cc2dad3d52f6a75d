"""Settings from flags, and the daemon's parts built from settings: shared by `run` and `drift`.

Configuration problems raise `ConfigError` with one line for the person at the terminal; the
commands print it and exit 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pydantic import SecretStr, ValidationError

from reconciler.declarations.fields import parse_duration
from reconciler.executors import registry
from reconciler.executors.base import Executor, Workspace
from reconciler.executors.registry import ExecutorConfigError
from reconciler.policy.apply import PolicyCheck
from reconciler.redact import redactor
from reconciler.settings import GitCredentials, Settings

EXIT_CONFIG = 2


class ConfigError(Exception):
    """A setting that cannot work; the message is one line and names the flag."""


def _secret_file(path: str | None, flag: str) -> SecretStr | None:
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{flag} {path}: {err.strerror or err}") from None
    redactor.add(value)
    return SecretStr(value)


def _env_secret(name: str) -> SecretStr | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    redactor.add(value)
    return SecretStr(value)


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def credentials_from_args(args: argparse.Namespace) -> GitCredentials:
    password = _secret_file(args.git_password_file, "--git-password-file") or _env_secret(
        "RECONCILER_GIT_PASSWORD")
    return GitCredentials(
        username=args.git_username or None,
        password=password,
        ssh_key_file=_optional_path(args.ssh_key_file),
        ssh_key_passphrase=_env_secret("RECONCILER_SSH_KEY_PASSPHRASE"),
        known_hosts_file=_optional_path(args.known_hosts_file),
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Every flag of `run` (and `drift`) into one frozen Settings, read once at start."""
    try:
        interval = parse_duration(getattr(args, "interval", "30s")).total_seconds()
    except ValueError as err:
        raise ConfigError(f"--interval: {err}") from None
    try:
        liveness = parse_duration(getattr(args, "liveness_timeout", "15m")).total_seconds()
    except ValueError as err:
        raise ConfigError(f"--liveness-timeout: {err}") from None
    try:
        max_parallel = int(args.max_parallel)
    except ValueError:
        raise ConfigError(f"--max-parallel: {args.max_parallel!r} is not a number") from None
    webhook = _secret_file(getattr(args, "webhook_secret_file", None), "--webhook-secret-file")
    api_token = _secret_file(getattr(args, "api_token_file", None)
                             or os.environ.get("RECONCILER_API_TOKEN_FILE"), "--api-token-file")
    try:
        executor_settings = registry.executor_settings(args)
    except ExecutorConfigError as err:
        raise ConfigError(str(err)) from None
    except ValidationError as err:
        raise _flag_error(err) from None
    try:
        return Settings(
            repo=args.repo,
            branch=args.branch,
            path=args.path,
            executor=args.executor,
            executor_settings=executor_settings,
            interval_seconds=interval,
            liveness_timeout_seconds=liveness,
            status_branch=args.status_branch,
            state_dir=Path(args.state_dir),
            listen=getattr(args, "listen", None) or None,
            once=bool(getattr(args, "once", False)),
            max_parallel=max_parallel,
            webhook_secret=webhook or _env_secret("RECONCILER_WEBHOOK_SECRET"),
            api_token=api_token,
            log_format=args.log_format,
            log_level=args.log_level,
            credentials=credentials_from_args(args),
            leader_elect=bool(getattr(args, "leader_elect", False)),
            leader_election_id=getattr(args, "leader_election_id", "reconciler"),
            **_policy_settings(args),
        )
    except ValidationError as err:
        raise _flag_error(err) from None


def _flag_error(err: ValidationError) -> ConfigError:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return ConfigError(f"--{field.replace('_', '-')}: {first['msg']}")


def _policy_settings(args: argparse.Namespace) -> dict[str, object]:
    from reconciler.commands.policyflags import names

    return {
        "policy_file": _optional_path(getattr(args, "policy", None)),
        "service_account": getattr(args, "service_account", "reconciler") or None,
        "reserved_service_accounts": names(getattr(args, "reserved_service_accounts",
                                                   "reconciler-runner")),
        "credentials_secret": getattr(args, "credentials_secret", "reconciler-credentials")
        or None,
        "reserved_secrets": names(getattr(args, "reserved_secrets", "")),
    }


def policy_check(settings: Settings, *, token_file: Path | None = None) -> PolicyCheck:
    """The policy (the safe defaults without a file) and what of the daemon's own no
    declaration may have. In a pod, the account its token names is the daemon's too.
    Raises ConfigError with every problem of the policy file."""
    from reconciler.commands.policyflags import IN_CLUSTER_TOKEN, daemon_identity
    from reconciler.policy.file import PolicyError, load_policy
    from reconciler.policy.model import DEFAULT_POLICY

    try:
        policy = load_policy(settings.policy_file) if settings.policy_file else DEFAULT_POLICY
    except PolicyError as err:
        raise ConfigError("\n".join(err.lines)) from None
    adapter = registry.adapter(settings.executor)
    identity = daemon_identity(
        executor=settings.executor,
        namespace=adapter.policy_namespace(settings),
        service_account=settings.service_account,
        reserved_service_accounts=settings.reserved_service_accounts,
        secrets=(settings.credentials_secret,
                 *(s for a in registry.adapters() for s in a.daemon_secrets(settings)),
                 *settings.reserved_secrets),
        token_file=IN_CLUSTER_TOKEN if token_file is None else token_file,
        instance=settings.leader_election_id,
    )
    return PolicyCheck(policy, identity)


def state_dir_problem(path: Path) -> str | None:
    """A one-line reason why the state dir cannot be used, or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return f"state dir {path} is not writable: {err.strerror or err}"
    return None


def build_executor(settings: Settings, workspace: Workspace) -> Executor:
    try:
        return registry.adapter(settings.executor).build(settings, workspace)
    except ExecutorConfigError as err:
        raise ConfigError(str(err)) from None
