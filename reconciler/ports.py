"""What the daemon needs of its Git source, its declarations loader and its leader elector.

Implemented by `reconciler.source.gitsource.GitSource`,
`reconciler.declarations.loader.DeclarationLoader` and
`reconciler.executors.kubernetes.leader.LeaderElector`; tests may pass anything that fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from reconciler.declarations.entries import DesiredState
from reconciler.declarations.files import FileSource
from reconciler.source.branchchange import StatusBranchChange
from reconciler.source.verdicts import SignedCommit
from reconciler.types import Revision


class SourcePort(Protocol):
    """What the daemon needs of the Git source (implemented in `reconciler.source`)."""

    branch: str
    status_branch: str

    @property
    def url(self) -> str:
        """The remote's URL without credentials."""
        ...

    def head(self) -> Revision | None: ...

    def fetch(self) -> Revision: ...

    def files(self, revision: Revision) -> FileSource: ...

    def only_status_changed(self, old: Revision, new: Revision) -> bool: ...

    def signed_commit(self, revision: Revision) -> SignedCommit:
        """A commit's signature and signed payload, committer and first parent (for
        `commits.verify`). Raises KeyError for a commit the source does not hold."""
        ...

    def read_status(self) -> dict[str, bytes]: ...

    def write_status(
        self, changes: Mapping[str, bytes | None], message: str
    ) -> Revision | None: ...

    def status_changed(self) -> StatusBranchChange | None:
        """How the status branch changed since this source last read or pushed it, as the
        last poll (`head`) saw it; None when it did not, or when no poll happened since."""
        ...


class LoaderPort(Protocol):
    def load(self, files: FileSource, revision: Revision | None = None) -> DesiredState: ...

    def save_cache(self) -> None:
        """Persist parsed files so a restart does not parse them again."""
        ...

    def save_snapshot(self) -> None:
        """Persist the last load whole, so a restart need not validate it again; slow, so
        called between cycles' plans."""
        ...


class Elector(Protocol):
    """The leader elector as `run` uses it (`executors.kubernetes.leader.LeaderElector`)."""

    @property
    def is_leader(self) -> bool: ...

    @property
    def holder(self) -> str | None: ...

    def stop(self, *, release: bool = True) -> None: ...
