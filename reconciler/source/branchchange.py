"""How the status branch changed under the daemon: a value the source reports and the daemon
reads, kept apart from the Git code so the daemon's ports load no Git library."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StatusBranchChange(BaseModel):
    """The status branch changed under the daemon since it last read or pushed it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rewritten: bool
    """Its history no longer holds the daemon's last status commit (a force-push, a reset, a
    deletion): every status file has to be written again."""
    reason: str
    files: dict[str, bytes]
    """The files under status/ on the branch now (none when it was deleted)."""

