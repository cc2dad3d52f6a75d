"""Whether the status branch still holds what the daemon last wrote to it (DESIGN §7).

The daemon commits only the status files that changed since its last status commit. A branch
that lost that commit (a force-push, a reset, a deletion and re-creation) or whose status files
someone changed would keep the damage for good, so `StatusBranch` remembers the last status
commit known to be on the branch (read at start, pushed since, or found to descend from one of
those) and compares it with the head that every poll's ls-remote advertises anyway.

While the branch is as the daemon left it, that costs nothing: no round trip, no walk. Only after
it moved is the branch fetched and one ancestry test made from the new head (which stops at our
commit), and the status tree read again only when the `status/` folder changed.
"""

from __future__ import annotations

import pygit2
from loguru import logger

from reconciler.source.branchchange import StatusBranchChange
from reconciler.source.remote import GitRemote
from reconciler.source.writer import contains
from reconciler.types import Revision


class StatusBranch:
    def __init__(self, remote: GitRemote, branch: str, folder: str) -> None:
        self._remote = remote
        self.branch = branch
        self._folder = folder
        self.known: Revision | None = None
        """The newest status commit known to be on the branch: what a change must keep."""
        self._advertised: Revision | None = None
        self._fresh = False
        """Whether `_advertised` came from a poll made since the last check or push."""

    def read(self) -> dict[str, bytes]:
        """The status files at the mirror's head of the branch (fetch first), remembered as
        what the daemon starts from."""
        self.known = self._remote.local_head(self.branch)
        self._fresh = False
        return self._remote.read_tree_files(self.branch, self._folder)

    def advertised(self, head: Revision | None) -> None:
        """The branch's head as a poll just saw it on the remote."""
        self._advertised, self._fresh = head, True

    def pushed(self, commit: Revision | None) -> None:
        """After a status commit: it is on the branch, and the last poll is older than it."""
        if commit is not None:
            self.known = commit
        self._fresh = False

    def check(self) -> StatusBranchChange | None:
        """How the branch changed since it was read or pushed, by the last poll; None when it
        did not (or no poll happened since). Fetches the branch only when it moved."""
        if not self._fresh:
            return None
        self._fresh = False
        ours = self.known
        if self._advertised == ours:
            return None
        if self._remote.local_head(self.branch) != self._advertised:
            self._remote.fetch([], optional=[self.branch])
        head = self._remote.local_head(self.branch)
        if head == ours:
            return None  # it moved and came back between the poll and the fetch
        self.known = head
        if head is None:
            assert ours is not None
            return StatusBranchChange(rewritten=True, files={},
                                      reason=f"was deleted (it held {ours[:12]})")
        if ours is not None and not contains(self._remote.repository, head, ours):
            return StatusBranchChange(
                rewritten=True, files=self._files(),
                reason=f"no longer contains the last status commit {ours[:12]}: its head"
                f" {head[:12]} was force-pushed or reset")
        if self._folder_id(ours) == self._folder_id(head):
            logger.debug("{} moved to {}; status files unchanged", self.branch, head[:12])
            return None
        return StatusBranchChange(
            rewritten=False, files=self._files(),
            reason=f"commit {head[:12]} changed files under {self._folder}/")

    def _files(self) -> dict[str, bytes]:
        return self._remote.read_tree_files(self.branch, self._folder)

    def _folder_id(self, commit: Revision | None) -> str | None:
        """The tree id of the status folder at `commit`: equal ids, equal files."""
        if commit is None:
            return None
        tree = self._remote.repository[commit].peel(pygit2.Commit).tree
        entry = tree[self._folder] if self._folder in tree else None  # noqa: SIM401 - no .get
        return str(entry.id) if entry is not None else None
