"""Daemon settings: read once at start from flags and `RECONCILER_*` variables, then passed in.

The settings of each executor are that executor's own model (declared in its package, beside
its flags, and found through `executors/registry.py`); `Settings` holds one of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class GitCredentials(BaseModel):
    """How to authenticate to the remote. Values never reach logs: SecretStr prints as ****."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str | None = None
    password: SecretStr | None = Field(default=None, description="HTTPS password or token.")
    ssh_key_file: Path | None = None
    ssh_key_passphrase: SecretStr | None = None
    known_hosts_file: Path | None = Field(
        default=None, description="SSH host keys to trust; unknown hosts are refused."
    )


_Model = TypeVar("_Model", bound=BaseModel)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: str
    branch: str = "main"
    path: str = "."
    executor: str = Field(default="local", description="A name in `executors.registry`.")
    executor_settings: tuple[BaseModel, ...] = Field(
        default=(), description="Each executor's own settings (`of` finds one)."
    )
    interval_seconds: float = 30.0
    liveness_timeout_seconds: float = Field(
        default=900.0, description="/healthz fails once one cycle has lasted longer than this."
    )
    status_branch: str = "reconciler-status"
    state_dir: Path = Path(".reconciler")
    listen: str | None = "127.0.0.1:9100"
    once: bool = False
    max_parallel: int = 4
    webhook_secret: SecretStr | None = None
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token of the control API; none: the API is off."
    )
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    credentials: GitCredentials = Field(default_factory=GitCredentials)
    leader_elect: bool = False
    leader_election_id: str = "reconciler"
    policy_file: Path | None = Field(
        default=None, description="The operator's Policy; none: the safe defaults."
    )
    service_account: str | None = Field(
        default="reconciler", description="The daemon's own service account."
    )
    reserved_service_accounts: tuple[str, ...] = Field(
        default=("reconciler-runner",), description="Accounts no declaration may name."
    )
    credentials_secret: str | None = Field(
        default="reconciler-credentials",
        description="Secret the daemon's Git credentials and webhook secret come from.",
    )
    reserved_secrets: tuple[str, ...] = Field(
        default=(), description="More Secret names or globs no declaration may use."
    )

    def of(self, model: type[_Model]) -> _Model:
        """The settings of one executor (its own model); the model's defaults when none was
        given."""
        for value in self.executor_settings:
            if isinstance(value, model):
                return value
        return model()

    @property
    def listen_address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)
