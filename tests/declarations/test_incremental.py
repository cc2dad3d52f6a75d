"""Loading commit after commit gives exactly what loading each commit afresh gives: the same
entries (and spec hashes), the same invalid entries, the same errors at the same positions,
in the same order. Histories are random (see `histories`), from a work tree, from Git
commits, and through a source that cannot list folders."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import DesiredState
from reconciler.declarations.files import FileEntry, FileSource, Listing
from reconciler.declarations.loader import DeclarationLoader
from reconciler.source.tree import GitTreeSource, open_repository
from reconciler.types import EntryId, Revision
from tests.declarations.histories import apply, edits
from tests.declarations.repo import HEADER, Repo, task

HISTORIES = st.lists(st.lists(edits(), min_size=1, max_size=4), min_size=1, max_size=6)
QUICK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Plain:
    """A source that can only walk, stat and read, as a `FileSource` may."""

    def __init__(self, files: FileSource) -> None:
        self._files = files

    def walk(self, prefix: str = ".") -> Iterator[FileEntry]:
        return self._files.walk(prefix)

    def stat(self, path: str) -> FileEntry | None:
        return self._files.stat(path)

    def read(self, path: str) -> bytes:
        return self._files.read(path)


def assert_same(incremental: DesiredState, fresh: DesiredState) -> None:
    assert [str(e) for e in incremental.errors] == [str(e) for e in fresh.errors]
    assert list(incremental.invalid.items()) == list(fresh.invalid.items())
    assert list(incremental.entries.items()) == list(fresh.entries.items())
    assert incremental == fresh


@settings(QUICK, max_examples=60)
@given(
    history=HISTORIES,
    path=st.sampled_from([".", ".", "team"]),
    plain=st.booleans(),
    back=st.integers(0, 3),
)
def test_work_tree_histories(
    history: list[list[tuple[str, str, str]]], path: str, plain: bool, back: int
) -> None:
    def source(root: Path) -> FileSource:
        return Plain(DirectorySource(root)) if plain else DirectorySource(root)

    with TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        loader = DeclarationLoader(path=path)
        snapshots: list[Path] = []
        for number, step in enumerate(history):
            for edit in step:
                apply(root, edit)
            snapshot = Path(tmp) / f"commit-{number}"
            shutil.copytree(root, snapshot, symlinks=True)
            snapshots.append(snapshot)
            fresh = DeclarationLoader(path=path).load(source(snapshot))
            assert_same(loader.load(source(snapshot)), fresh)
            if back and number:
                # The daemon also loads the commit an entry was last applied at.
                older = snapshots[max(0, number - back)]
                fresh = DeclarationLoader(path=path).load(source(older))
                assert_same(loader.load(source(older)), fresh)


@settings(QUICK, max_examples=12)
@given(history=HISTORIES, back=st.integers(0, 2))
def test_commit_histories_with_a_persisted_cache(
    history: list[list[tuple[str, str, str]]], back: int
) -> None:
    with TemporaryDirectory() as tmp:
        repo = Repo(Path(tmp) / "repo")
        cache = Path(tmp) / "state" / "declarations.cache"
        loader = DeclarationLoader(cache_file=cache)
        revisions: list[Revision] = []
        for step in history:
            for edit in step:
                apply(repo.root, edit)
            revision = Revision(repo.commit())
            revisions.append(revision)
            git = open_repository(repo.root)
            fresh = DeclarationLoader().load(GitTreeSource(git, revision), revision)
            assert_same(loader.load(GitTreeSource(git, revision), revision), fresh)
            loader.save_cache()
            restarted = DeclarationLoader(cache_file=cache)
            assert_same(restarted.load(GitTreeSource(git, revision), revision), fresh)
            assert restarted.stats.parsed == 0
            if back and len(revisions) > 1:
                older = revisions[max(0, len(revisions) - 1 - back)]
                fresh = DeclarationLoader().load(GitTreeSource(git, older), older)
                assert_same(loader.load(GitTreeSource(git, older), older), fresh)


def test_a_one_file_change_rebuilds_one_entry(repo: Repo) -> None:
    repo.write({f"team-{i % 5}/t{i}.yaml": task(f"t{i}") for i in range(50)})
    loader = DeclarationLoader()
    first = loader.load(DirectorySource(repo.root))
    repo.write({"team-3/t8.yaml": task("t8", "  command: [python3, -c, 'print(2)']\n")})
    second = loader.load(DirectorySource(repo.root))
    assert (loader.stats.files, loader.stats.parsed, loader.stats.validated) == (50, 1, 1)
    rebuilt = [i for i, e in second.entries.items() if e is not first.entries[i]]
    assert rebuilt == ["task/t8"]
    changed = EntryId("task/t8")
    assert second.entries[changed].spec_hash != first.entries[changed].spec_hash
    third = loader.load(DirectorySource(repo.root))
    assert (loader.stats.parsed, loader.stats.validated) == (0, 0)
    assert third == second


class Pruned(DirectorySource):
    """A commit whose objects have gone (pruned after a force-push): it can no longer be
    listed."""

    gone = False

    def children(self, path: str) -> Listing:
        if self.gone:
            raise KeyError(f"object of {path} not found")
        return super().children(path)


def test_a_commit_that_can_no_longer_be_read_is_compared_whole(
    repo: Repo, tmp_path: Path
) -> None:
    repo.write({"a.yaml": task("a"), "b.yaml": task("b", extra="  labels: {x: y}\n")})
    old = tmp_path / "old"
    shutil.copytree(repo.root, old)
    loader = DeclarationLoader()
    loader.load(DirectorySource(old))
    before = Pruned(old)
    loader.load(before)  # the one the next load is compared with
    before.gone = True
    repo.remove("a.yaml").write({"c.yaml": task("c"), "b.yaml": task("b")})
    desired = loader.load(DirectorySource(repo.root))
    assert_same(desired, DeclarationLoader().load(DirectorySource(repo.root)))
    assert sorted(desired.entries) == ["task/b", "task/c"]


class Failing(DirectorySource):
    """An object database that fails while one file is read."""

    def read(self, path: str) -> bytes:
        if path == "bad.yaml":
            raise RuntimeError("the object database cannot be read")
        return super().read(path)


def test_a_failing_source_leaves_the_next_load_right(repo: Repo) -> None:
    repo.write({"a.yaml": task("a", "  command: [ls]\n  dependsOn: [task/b]\n")})
    loader = DeclarationLoader()
    loader.load(DirectorySource(repo.root))
    repo.write({"b.yaml": task("b"), "bad.yaml": HEADER + "kind: Task\n"})
    with pytest.raises(RuntimeError, match="cannot be read"):
        loader.load(Failing(repo.root))
    desired = loader.load(DirectorySource(repo.root))
    assert_same(desired, DeclarationLoader().load(DirectorySource(repo.root)))
    assert sorted(desired.entries) == ["task/a", "task/b"]


def test_entries_are_independent_values(repo: Repo) -> None:
    """Entries and documents share what they hold alike (strings, field sets): copying one
    with a change leaves the others as they were."""
    repo.write({"a.yaml": task("a"), "b.yaml": task("b")})
    desired = DeclarationLoader().load(DirectorySource(repo.root))
    a, b = desired.entries[EntryId("task/a")], desired.entries[EntryId("task/b")]
    assert a.spec.model_fields_set is b.spec.model_fields_set
    before = set(b.spec.model_fields_set)
    changed = a.spec.model_copy(update={"retries": 3})
    assert "retries" in changed.model_fields_set
    assert a.spec.model_fields_set == b.spec.model_fields_set == before
    with pytest.raises(ValidationError, match="frozen"):
        a.spec.retries = 1  # type: ignore[misc]
