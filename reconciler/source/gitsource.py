"""The daemon's view of its Git repository: poll, fetch, read a commit, write status.

Composes the remote mirror (`remote`), commit trees (`tree`) and status commits (`writer`)
into the one object the daemon and the executors' `Workspace` port need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from tempfile import TemporaryDirectory

import pygit2

from reconciler.declarations.files import FileSource
from reconciler.settings import GitCredentials
from reconciler.source.branchchange import StatusBranchChange
from reconciler.source.errors import BranchNotFoundError
from reconciler.source.remote import GitRemote, branch_ref
from reconciler.source.statusbranch import StatusBranch
from reconciler.source.tree import GitTreeSource, changed_paths, materialize, open_repository
from reconciler.source.verdicts import SignedCommit
from reconciler.source.writer import Author, commit_files
from reconciler.types import Revision

STATUS_PREFIX = "status/"


class GitSource:
    def __init__(
        self,
        url: str,
        state_dir: Path,
        *,
        branch: str = "main",
        status_branch: str = "reconciler-status",
        credentials: GitCredentials | None = None,
        author: Author | None = None,
        on_push_conflict: Callable[[], None] | None = None,
    ) -> None:
        self.remote = GitRemote(url, state_dir, credentials=credentials)
        self.branch = branch
        self.status_branch = status_branch
        self.author = author or Author()
        self.on_push_conflict = on_push_conflict
        self._status = StatusBranch(self.remote, status_branch, STATUS_PREFIX.rstrip("/"))

    @property
    def url(self) -> str:
        return self.remote.url

    def head(self) -> Revision | None:
        """The tracked branch's head on the remote. The same round trip shows the status
        branch's head, which tells `status_changed` whether someone rewrote it."""
        heads = self.remote.remote_heads()
        self._status.advertised(heads.get(_name(self.status_branch)))
        return heads.get(_name(self.branch))

    def fetch(self) -> Revision:
        optional = () if self.status_branch == self.branch else (self.status_branch,)
        return self.remote.fetch([self.branch], optional=optional)[self.branch]

    def files(self, revision: Revision) -> FileSource:
        return GitTreeSource(self.remote.repository, revision)

    def signed_commit(self, revision: Revision) -> SignedCommit:
        """A commit's signature and what it signs (for SSH and OpenPGP alike), its committer
        and first parent. Raises KeyError when the mirror does not hold the commit."""
        commit = self.remote.repository[revision].peel(pygit2.Commit)
        signature, payload = commit.gpg_signature
        parents = commit.parent_ids
        return SignedCommit(
            id=Revision(str(commit.id)),
            signature=signature,
            payload=payload if payload is not None else commit.read_raw(),
            committer_email=commit.committer.raw_email.decode(errors="replace"),
            first_parent=Revision(str(parents[0])) if parents else None,
        )

    def only_status_changed(self, old: Revision, new: Revision) -> bool:
        """True when `new` differs from `old` only under status/: with the status branch set
        to the tracked branch, the daemon's own status commits must not count as changes."""
        paths = changed_paths(self.remote.repository, old, new)
        return bool(paths) and all(p.startswith(STATUS_PREFIX) for p in paths)

    def read_status(self) -> dict[str, bytes]:
        self.fetch()
        return self._status.read()

    def write_status(self, changes: Mapping[str, bytes | None], message: str) -> Revision | None:
        """Commit and push `changes`; HistoryRewrittenError when the branch was rewritten
        while pushing (the next `status_changed` says what is there now)."""
        commit = commit_files(self.remote, self.status_branch, changes, message, self.author,
                              on_conflict=self.on_push_conflict, keep=self._status.known)
        self._status.pushed(commit)
        return commit

    def status_changed(self) -> StatusBranchChange | None:
        return self._status.check()

    def materialize(self, revision: Revision, dest: Path) -> None:
        """The executors' `Workspace`: the whole repository at `revision` (a stack's module may
        reference modules elsewhere in it)."""
        materialize(self.remote.repository, revision, dest)


def _name(branch: str) -> str:
    return branch_ref(branch).removeprefix("refs/heads/")


def read_status_files(location: str, status_branch: str) -> dict[str, bytes]:
    """The status tree of `status_branch` from a local clone (its branch, or else its
    `origin/` remote-tracking branch) or from any remote URL (fetched into a temporary mirror)."""
    folder = Path(location)
    if folder.is_dir() and not location.endswith(".git") and (folder / ".git").exists():
        repo = open_repository(folder)
        for ref in (f"refs/heads/{status_branch}", f"refs/remotes/origin/{status_branch}"):
            if ref in repo.references:
                commit = repo.references[ref].peel(pygit2.Commit)
                source = GitTreeSource(repo, str(commit.id))
                return {e.path: source.read(e.path) for e in source.walk(STATUS_PREFIX.rstrip("/"))}
        raise BranchNotFoundError(
            f"{location} has no branch {status_branch} (run `git fetch origin {status_branch}`)")
    with TemporaryDirectory(prefix="reconciler-status-") as tmp:
        remote = GitRemote(location, Path(tmp))
        remote.fetch([status_branch])
        return remote.read_tree_files(status_branch, STATUS_PREFIX.rstrip("/"))
