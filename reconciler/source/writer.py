"""Commit files to a branch with no work tree, and push it without losing anyone's commit.

Trees are rewritten with `TreeBuilder` along the changed paths only, so a one-file status
commit costs the same in a repository of ten files or ten thousand; the blobs of a commit of
many files go into one pack (`packfile`) instead of a loose file each. When the push is refused
because the branch moved (another replica, or a person, pushed first), the same changes are
rebuilt on the new head and pushed again, a bounded number of times with growing pauses,
unless the new head no longer holds the commit the caller said must stay (`keep`): then the
branch was rewritten, and the caller has to write more than this change.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime

import pygit2
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from reconciler.source import packfile
from reconciler.source.errors import HistoryRewrittenError, PushConflictError, PushRejectedError
from reconciler.source.remote import GitRemote
from reconciler.types import Revision

DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF = 0.2
"""Seconds before the second attempt; doubled each time, with jitter, so two replicas that
collided do not collide again in lockstep."""
PACKED = 256
"""From this many new files on, a commit's blobs are written as one pack: thousands of loose
files cost more to create, and to pack and delete afterwards, than the commit itself."""

_Changes = dict[str, "bytes | _Changes | None"]


class Author(BaseModel):
    """Who commits: used as both author and committer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="reconciler", min_length=1)
    email: str = Field(default="reconciler@localhost", min_length=1)


def _now() -> datetime:
    return datetime.now(UTC)


def commit_files(
    remote: GitRemote,
    branch: str,
    changes: Mapping[str, bytes | None],
    message: str,
    author: Author | None = None,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = _now,
    on_conflict: Callable[[], None] | None = None,
    keep: Revision | None = None,
) -> Revision | None:
    """Commit `changes` (path → new content, or None to delete the file) on top of `branch`
    and push it. Returns the pushed commit, or None when the files already hold that content
    (nothing is committed or pushed). A branch that does not exist yet is created with one
    parentless commit holding just these files.

    Raises PushRejectedError when the server refuses the update for another reason than a
    concurrent push, PushConflictError when the branch moved under every attempt, and the
    other SourceErrors of the connection. `on_conflict` is called for every lost race (for
    the `status_push_total{result="conflict"}` metric). With `keep`, a lost race to a head
    that does not contain `keep` raises HistoryRewrittenError instead of rebuilding on it.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    nested = _nest(changes)
    author = author or Author()
    for attempt in range(1, attempts + 1):
        base = remote.local_head(branch)
        commit = _commit_on(
            remote.repository, base, nested, message=message, author=author, when=clock()
        )
        if commit is None:
            return None
        try:
            remote.push(commit, branch)
        except PushRejectedError:
            head = remote.remote_head(branch)
            if head == base:
                raise  # the branch did not move: the server refuses us for another reason
            if on_conflict is not None:
                on_conflict()
            _catch_up(remote, branch, head, attempt=attempt, attempts=attempts, backoff=backoff,
                      sleep=sleep)
            _check_kept(remote, branch, keep)
            continue
        return commit
    raise PushConflictError(
        f"{branch} on {remote.url} kept moving; gave up after {attempts} attempts to push"
    )


def _catch_up(
    remote: GitRemote,
    branch: str,
    head: Revision | None,
    *,
    attempt: int,
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None],
) -> None:
    """After losing the race for `branch` to `head`: say so and, unless that was the last
    attempt, wait (growing pauses) and fetch the new head to rebuild on."""
    logger.info(
        "{branch} moved on {url} while pushing (attempt {attempt} of {attempts});"
        " rebuilding the change on {head}",
        branch=branch, url=remote.url, attempt=attempt, attempts=attempts,
        head=(head or "nothing")[:12],
    )
    if attempt < attempts:
        jitter = random.uniform(0.75, 1.25)  # noqa: S311 - not a secret
        sleep(backoff * 2 ** (attempt - 1) * jitter)
        remote.fetch([], optional=[branch])


def contains(repo: pygit2.Repository, head: Revision, commit: Revision) -> bool:
    """Whether `commit` is `head` or one of its ancestors. libgit2 walks back from `head` only
    until it meets `commit` (or runs out of newer commits), so the cost follows what was added
    since `commit`, not the length of the history. A commit the mirror no longer has (pruned
    after a force-push) is not an ancestor: fetching `head` would have brought it back."""
    if head == commit:
        return True
    try:
        return bool(repo.descendant_of(pygit2.Oid(hex=head), pygit2.Oid(hex=commit)))
    except (KeyError, ValueError, pygit2.GitError):
        return False


def _check_kept(remote: GitRemote, branch: str, keep: Revision | None) -> None:
    """After catching up: refuse to rebuild on a head that dropped `keep` (or on nothing)."""
    if keep is None:
        return
    head = remote.local_head(branch)
    if head is None:
        raise HistoryRewrittenError(f"{branch} on {remote.url} was deleted while pushing")
    if not contains(remote.repository, head, keep):
        raise HistoryRewrittenError(
            f"{branch} on {remote.url} was rewritten while pushing: {head[:12]} no longer"
            f" contains {keep[:12]}"
        )


def _commit_on(
    repo: pygit2.Repository,
    base: Revision | None,
    changes: _Changes,
    *,
    message: str,
    author: Author,
    when: datetime,
) -> Revision | None:
    parent = repo[base].peel(pygit2.Commit) if base is not None else None
    # Written on every attempt: a compaction while catching up drops the blobs of the last.
    blobs = write_blobs(repo, list(_contents(changes)))
    tree = write_tree(repo, parent.tree if parent is not None else None, changes, blobs)
    if parent is not None and tree == parent.tree_id:
        return None
    if parent is None and tree is None:
        return None  # only deletions, on a branch that does not exist: nothing to record
    if tree is None:
        tree = repo.TreeBuilder().write()
    offset = when.utcoffset()
    signature = pygit2.Signature(
        author.name,
        author.email,
        int(when.timestamp()),
        int(offset.total_seconds() // 60) if offset is not None else 0,
    )
    text = message if message.endswith("\n") else message + "\n"
    parents = [parent.id] if parent is not None else []
    return Revision(str(repo.create_commit(None, signature, signature, text, tree, parents)))


def write_blobs(repo: pygit2.Repository, contents: list[bytes]) -> dict[bytes, pygit2.Oid]:
    """Each content's blob id, the blobs written: loose when few, else in one pack."""
    if len(contents) >= PACKED and sum(map(len, contents)) <= packfile.MAX_BYTES:
        return dict(zip(contents, packfile.write_blobs(repo, contents), strict=True))
    return {data: repo.create_blob(data) for data in contents}


def _contents(changes: _Changes) -> Iterator[bytes]:
    for change in changes.values():
        if isinstance(change, dict):
            yield from _contents(change)
        elif change is not None:
            yield change


def write_tree(
    repo: pygit2.Repository, tree: pygit2.Tree | None, changes: _Changes,
    blobs: Mapping[bytes, pygit2.Oid],
) -> pygit2.Oid | None:
    """Write `tree` with `changes` applied, reusing every untouched subtree as it is; `blobs`
    holds the id of every new content. Returns None when the result is empty (an empty
    folder does not exist in Git)."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    for name, change in changes.items():
        existing = tree[name] if tree is not None and name in tree else None
        if isinstance(change, dict):
            subtree = existing if isinstance(existing, pygit2.Tree) else None
            oid = write_tree(repo, subtree, change, blobs)
            if oid is not None:
                builder.insert(name, oid, pygit2.enums.FileMode.TREE)
            elif existing is not None:
                builder.remove(name)
        elif change is None:
            if existing is not None:
                builder.remove(name)
        else:
            builder.insert(name, blobs[change], pygit2.enums.FileMode.BLOB)
    if len(builder) == 0:
        return None
    return builder.write()


def _nest(changes: Mapping[str, bytes | None]) -> _Changes:
    """`{"a/b.yaml": x}` → `{"a": {"b.yaml": x}}`, refusing paths that could escape or clash."""
    root: _Changes = {}
    for path, content in changes.items():
        parts = path.split("/")
        if path.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts):
            raise ValueError(f"invalid path {path!r}: expected a relative path like a/b.yaml")
        if content is not None and not isinstance(content, bytes):
            raise TypeError(f"{path}: content must be bytes or None, not {type(content).__name__}")
        node = root
        for folder in parts[:-1]:
            child = node.setdefault(folder, {})
            if not isinstance(child, dict):
                raise ValueError(f"{path!r} needs {folder!r} to be a folder, but it is a file")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"{path!r} is both a file and a folder in one change")
        node[parts[-1]] = content
    return root
