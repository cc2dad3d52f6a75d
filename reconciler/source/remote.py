"""The Git remote and its bare mirror under `<state-dir>/mirror.git`.

The daemon polls with `remote_head` (one ls-remote round trip, no objects), calls `fetch` only
when a head moved, and reads commits from `repository`. Branches are mirrored as
`refs/heads/<name>`, forced to whatever the remote has, so the mirror never diverges.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import pygit2
from loguru import logger

from reconciler.redact import Redactor, redactor
from reconciler.settings import GitCredentials
from reconciler.source.callbacks import Callbacks
from reconciler.source.errors import (
    AuthenticationError,
    BranchNotFoundError,
    InvalidRemoteURLError,
    PushRejectedError,
    RemoteNotFoundError,
    RemoteUnreachableError,
    SourceConfigurationError,
    SourceError,
)
from reconciler.source.maintenance import (
    PACK_LIMIT,
    compact,
    needs_compaction,
    pack_loose,
    too_many_loose,
)
from reconciler.source.urls import parse_remote_url, redact_url
from reconciler.types import Revision

MIRROR_DIR = "mirror.git"
_HEADS = "refs/heads/"
_URL_KEY = "reconciler.url"
_T = TypeVar("_T")

# libgit2's messages for a push whose target moved since we last fetched it.
_MOVED = ("not present locally", "non-fastforwardable", "non-fast-forward")
_NOT_FOUND = (
    "repository not found",
    "could not find repository",
    "not exported",
    "does not appear to be a git repository",
    "status code: 404",
)
_AUTH = ("authentication", "status code: 401", "status code: 403", "permission denied")
_BAD_URL = ("unsupported url protocol", "invalid argument", "malformed url", "invalid url")


def branch_ref(branch: str) -> str:
    """`main` → `refs/heads/main`; a full `refs/heads/...` name is kept. Raises ValueError on
    a name Git would not accept."""
    ref = branch if branch.startswith(_HEADS) else _HEADS + branch
    if not pygit2.reference_is_valid_name(ref):
        raise ValueError(f"invalid branch name {branch!r}")
    return ref


class GitRemote:
    """One remote repository, its credentials, and its local bare mirror.

    Thread-safe: one lock serialises every operation on the mirror, so a webhook thread may
    poll while the worker reads trees.
    """

    def __init__(
        self,
        url: str,
        state_dir: Path,
        *,
        credentials: GitCredentials | None = None,
        timeout: float | None = 30.0,
        redact: Redactor = redactor,
        pack_limit: int = PACK_LIMIT,
    ) -> None:
        self.remote = parse_remote_url(url)
        self.credentials = credentials or GitCredentials()
        self._redact = redact
        self._register_secrets()
        self._check_configuration()
        if timeout is not None:
            # Process-wide libgit2 options (the last GitRemote made sets them); without them a
            # silent server blocks the worker forever.
            pygit2.settings.server_connect_timeout = int(timeout * 1000)
            pygit2.settings.server_timeout = int(timeout * 1000)
        self._pack_limit = pack_limit
        self._lock = threading.RLock()
        self.path = Path(state_dir) / MIRROR_DIR
        self._repo = self._open_mirror()

    def __repr__(self) -> str:
        return f"GitRemote({self.remote.display!r}, mirror={str(self.path)!r})"

    @property
    def url(self) -> str:
        """The remote's URL without credentials, for logs and status."""
        return self.remote.display

    @property
    def repository(self) -> pygit2.Repository:
        """The bare mirror, for reading trees and blobs at a commit. Ask for it again after a
        fetch or push rather than keeping it: the mirror is reopened when it is compacted."""
        return self._repo

    # -- polling and fetching ----------------------------------------------------------------

    def remote_heads(self) -> dict[str, Revision]:
        """Every branch the remote advertises and its commit, in one round trip, no fetch."""
        with self._lock:
            remote = self._anonymous()
            heads = self._call("list the branches of", lambda cb: remote.list_heads(callbacks=cb))
        return {
            h.name.removeprefix(_HEADS): Revision(str(h.oid))
            for h in heads
            if h.name and h.name.startswith(_HEADS)
        }

    def remote_head(self, branch: str) -> Revision | None:
        """The commit `branch` points at on the remote, or None if it does not exist there.
        The no-op poll: ls-remote only, nothing is downloaded."""
        return self.remote_heads().get(branch_ref(branch).removeprefix(_HEADS))

    def fetch(
        self, branches: Iterable[str], *, optional: Collection[str] = ()
    ) -> dict[str, Revision]:
        """Fetch `branches` and `optional` into the mirror in one connection; return the commit
        of each branch that exists. A missing branch of `branches` raises BranchNotFoundError;
        a missing optional one (the status branch before its first commit) is left out, and
        its stale mirror ref, if any, is deleted."""
        required = [branch_ref(b) for b in branches]
        wanted = list(dict.fromkeys([*required, *(branch_ref(b) for b in optional)]))
        refspecs = [f"+{ref}:{ref}" for ref in wanted]
        started = time.monotonic()
        with self._lock:
            remote = self._anonymous()
            stats = self._call("fetch from", lambda cb: remote.fetch(refspecs, callbacks=cb))
            # What the server advertised during that fetch; no new connection.
            heads = self._call("fetch from", lambda cb: remote.list_heads(connect=False))
            advertised = {h.name for h in heads if h.name}
            missing = [ref for ref in required if ref not in advertised]
            if missing:
                names = ", ".join(ref.removeprefix(_HEADS) for ref in missing)
                raise BranchNotFoundError(f"{self.url} has no branch {names}")
            result: dict[str, Revision] = {}
            for ref in wanted:
                if ref in advertised:
                    target = self._repo.references[ref].target
                    result[ref.removeprefix(_HEADS)] = Revision(str(target))
                elif ref in self._repo.references:
                    self._repo.references.delete(ref)
            self._maintain()
        logger.debug(
            "fetched {branches} from {url}: {objects} objects in {ms:.1f} ms",
            branches=", ".join(f"{b}@{c[:12]}" for b, c in result.items()) or "nothing",
            url=self.url,
            objects=stats.received_objects,
            ms=(time.monotonic() - started) * 1000,
        )
        return result

    # -- the mirror ----------------------------------------------------------------------------

    def local_head(self, branch: str) -> Revision | None:
        """The commit of `branch` in the mirror (as last fetched or pushed), or None."""
        with self._lock:
            ref = self._repo.references.get(branch_ref(branch))
            return Revision(str(ref.target)) if ref is not None else None

    def resolve(self, ref: str) -> Revision:
        """A branch name, full ref name or (abbreviated) commit id → the full commit id in the
        mirror. Raises BranchNotFoundError when nothing in the mirror matches."""
        with self._lock:
            candidates = [ref] if ref.startswith("refs/") else [_HEADS + ref, ref]
            for candidate in candidates:
                try:
                    commit = self._repo.revparse_single(candidate).peel(pygit2.Commit)
                except (KeyError, ValueError, pygit2.GitError):
                    continue
                return Revision(str(commit.id))
        raise BranchNotFoundError(f"no branch or commit {ref!r} in the mirror of {self.url}")

    def read_tree_files(self, branch: str, prefix: str = "") -> dict[str, bytes]:
        """Every file below `prefix` (a folder, '' for all) at the mirror's head of `branch`,
        keyed by path from the repository root. Empty when the branch or folder is absent."""
        with self._lock:
            head = self.local_head(branch)
            if head is None:
                return {}
            root = self._repo[head].peel(pygit2.Tree)
            folder = prefix.strip("/")
            try:
                tree = root[folder] if folder else root
            except KeyError:
                return {}
            if not isinstance(tree, pygit2.Tree):
                return {}
            return dict(_walk_blobs(tree, folder))

    def set_local_head(self, branch: str, commit: Revision) -> None:
        """Point the mirror's `branch` at `commit` (after a successful push)."""
        with self._lock:
            self._repo.references.create(branch_ref(branch), pygit2.Oid(hex=commit), force=True)

    # -- pushing -------------------------------------------------------------------------------

    def push(self, commit: Revision, branch: str) -> None:
        """Update `branch` on the remote to `commit` (no force). Raises PushRejectedError when
        the server refuses the update or it is not a fast-forward of the remote branch; the
        caller tells a concurrent push from a protected branch by looking at the remote head.
        The mirror's ref is moved only after the server accepted."""
        ref = branch_ref(branch)
        with self._lock:
            remote = self._anonymous()
            callbacks = Callbacks(self.remote, self.credentials)
            try:
                # threads=0: the pack sent is built on every core (deltas of thousands of
                # records after a large status commit).
                self._call("push to",
                           lambda cb: remote.push([f"{commit}:{ref}"], callbacks=cb, threads=0),
                           callbacks=callbacks)
            except _PushMoved as exc:
                raise PushRejectedError(f"{self.url} refused {branch}: {exc}") from None
            if ref in callbacks.refused:
                reason = self._clean(callbacks.refused[ref])
                raise PushRejectedError(f"{self.url} refused the update of {branch}: {reason}")
            if ref not in callbacks.accepted:
                raise PushRejectedError(f"{self.url} did not confirm the update of {branch}")
            self.set_local_head(branch, commit)
            self._maintain()
        logger.debug("pushed {commit} to {branch} of {url}", commit=commit[:12], branch=branch,
                     url=self.url)

    # -- internals -----------------------------------------------------------------------------

    def _register_secrets(self) -> None:
        creds = self.credentials
        for secret in (creds.password, creds.ssh_key_passphrase):
            if secret is not None:
                self._redact.add(secret.get_secret_value())
        if self.remote.password:
            self._redact.add(self.remote.password)
        elif self.remote.username and self.remote.scheme in ("http", "https"):
            self._redact.add(self.remote.username)  # `https://TOKEN@host/...`

    def _check_configuration(self) -> None:
        creds = self.credentials
        if self.remote.scheme == "ssh":
            if creds.known_hosts_file is None:
                raise SourceConfigurationError(
                    f"{self.url}: an ssh remote needs a known_hosts file (--known-hosts-file);"
                    " unknown host keys are refused"
                )
            if creds.ssh_key_file is not None and not Path(creds.ssh_key_file).is_file():
                raise SourceConfigurationError(f"SSH key file {creds.ssh_key_file} does not exist")
        if self.remote.scheme == "file":
            local = Path(self.remote.url.removeprefix("file://"))
            if not local.exists():
                raise RemoteNotFoundError(f"no repository at {local}")

    def _open_mirror(self) -> pygit2.Repository:
        try:
            repo = pygit2.Repository(str(self.path), pygit2.enums.RepositoryOpenFlag.BARE)
        except pygit2.GitError:
            if self.path.exists():
                logger.warning("the mirror at {path} is unreadable; recreating it", path=self.path)
                shutil.rmtree(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(self.path), bare=True)
        config = repo.config
        recorded = config[_URL_KEY] if _URL_KEY in config else None  # noqa: SIM401 - no .get
        if recorded != self.url:
            # Another remote's branches must not become the parents of our status commits.
            for name in [r for r in repo.references if r.startswith(_HEADS)]:
                repo.references.delete(name)
            config[_URL_KEY] = self.url
        return repo

    def _maintain(self) -> None:
        if needs_compaction(self.path, pack_limit=self._pack_limit):
            compact(self._repo)
        elif too_many_loose(self.path):
            pack_loose(self._repo)
        else:
            return
        # A fresh handle: the old one lists packs just deleted, or not the one just written.
        self._repo = pygit2.Repository(str(self.path), pygit2.enums.RepositoryOpenFlag.BARE)

    def _anonymous(self) -> pygit2.Remote:
        # Anonymous: the URL is not written to the mirror's config, nor are the refspecs.
        return self._repo.remotes.create_anonymous(self.remote.url)

    def _call(
        self,
        action: str,
        operation: Callable[[Callbacks], _T],
        *,
        callbacks: Callbacks | None = None,
    ) -> _T:
        """Run one network operation with fresh callbacks, turning libgit2's errors into ours."""
        try:
            return operation(callbacks or Callbacks(self.remote, self.credentials))
        except SourceError:
            raise
        except pygit2.GitError as exc:
            raise self._translate(action, exc) from None

    def _translate(self, action: str, exc: pygit2.GitError) -> Exception:
        message = self._clean(str(exc)) or type(exc).__name__
        lower = message.lower()
        if action == "push to" and any(m in lower for m in _MOVED):
            return _PushMoved(message)
        if isinstance(exc, pygit2.AuthError) or any(m in lower for m in _AUTH):
            return AuthenticationError(f"authentication to {self.url} failed: {message}")
        if any(m in lower for m in _BAD_URL):
            return InvalidRemoteURLError(f"{self.url}: {message}")
        if any(m in lower for m in _NOT_FOUND):
            return RemoteNotFoundError(f"no repository at {self.url}: {message}")
        if isinstance(exc, pygit2.CertificateError):
            return SourceConfigurationError(
                f"{self.url}: the server's TLS certificate is not trusted: {message}"
            )
        return RemoteUnreachableError(f"cannot {action} {self.url}: {message}")

    def _clean(self, text: str) -> str:
        """One line, no URL credentials, no registered secret."""
        return self._redact(" ".join(redact_url(text).split()))


class _PushMoved(Exception):
    """libgit2 refused to push before sending: the remote branch is not what we built on."""


def _walk_blobs(tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, bytes]]:
    for entry in tree:
        path = f"{prefix}/{entry.name}" if prefix else str(entry.name)
        if isinstance(entry, pygit2.Tree):
            yield from _walk_blobs(entry, path)
        elif isinstance(entry, pygit2.Blob):
            yield path, entry.data
