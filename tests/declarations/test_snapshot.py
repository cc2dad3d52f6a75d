"""Snapshots in the state dir: read back only as saved, by the same code, from a file of
ours; anything else reads as no snapshot. A loader restarted from the snapshot of one commit
loads any other exactly as a fresh loader does."""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.declarations import snapshot
from reconciler.declarations.loader import DeclarationLoader
from reconciler.source.tree import GitTreeSource, open_repository
from reconciler.types import Revision
from tests.declarations.histories import apply, edits
from tests.declarations.repo import Repo, task
from tests.declarations.test_incremental import assert_same

VALUE = {"a": [1, 2.5, None, True, frozenset({"x"})], ("k", b"\0"): "text"}


def test_what_is_saved_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "x.snapshot"
    snapshot.save(path, "key", VALUE)
    assert snapshot.load(path, "key") == VALUE
    assert path.stat().st_mode & 0o777 == 0o600
    snapshot.save(path, "key", "first", VALUE)
    assert snapshot.load(path, "key", 0) == "first"
    assert snapshot.load(path, "key", 1) == VALUE
    assert snapshot.load(path, "key", 2) is None


def test_another_key_or_other_code_misses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.snapshot"
    snapshot.save(path, "key", VALUE)
    assert snapshot.load(path, "other") is None
    monkeypatch.setattr(snapshot, "code_version", lambda: "another version")
    assert snapshot.load(path, "key") is None


def test_a_missing_truncated_or_damaged_file_misses(tmp_path: Path) -> None:
    path = tmp_path / "x.snapshot"
    assert snapshot.load(path, "key") is None
    snapshot.save(path, "key", VALUE, "second")
    whole = path.read_bytes()
    for size in range(len(whole)):
        path.write_bytes(whole[:size])
        assert snapshot.load(path, "key", 0) is None, size
        assert snapshot.load(path, "key", 1) is None, size
    for at in range(len(whole)):
        damaged = bytearray(whole)
        damaged[at] ^= 0x40
        path.write_bytes(bytes(damaged))
        # A damaged section, or a damaged header or key, never reads as what was saved.
        assert snapshot.load(path, "key", 0) in (None, VALUE), at
        assert snapshot.load(path, "key", 1) in (None, "second"), at
        assert (snapshot.load(path, "key", 0), snapshot.load(path, "key", 1)) != (
            VALUE, "second"), at
    path.write_bytes(whole + b"\0")
    assert snapshot.load(path, "key") is None


def test_a_file_others_may_use_is_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "x.snapshot"
    snapshot.save(path, "key", VALUE)
    path.chmod(0o644)
    assert snapshot.load(path, "key") is None
    path.chmod(0o600)
    link = tmp_path / "link.snapshot"
    link.symlink_to(path)
    assert snapshot.load(link, "key") is None
    assert snapshot.load(path, "key") == VALUE


class _Call:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def test_a_well_formed_file_naming_a_function_runs_nothing(tmp_path: Path) -> None:
    """Even a file that passes every check cannot make unpickling call anything but the
    classes of the pure layers."""
    path, marker = tmp_path / "x.snapshot", tmp_path / "called"
    def framed(value: object) -> bytes:
        payload = pickle.dumps(value, protocol=5)
        named = f"key\0{snapshot.code_version()}".encode()
        head = struct.pack(">4sII", b"RSN1", len(named), 1) + struct.pack(
            ">Q32s", len(payload), hashlib.sha256(payload).digest())
        return head + named + payload

    path.write_bytes(framed({"entries": [_Call(marker)]}))
    path.chmod(0o600)
    assert snapshot.load(path, "key") is None
    assert not marker.exists()
    # The same framing with harmless content is read: the refusal came from the content.
    path.write_bytes(framed(VALUE))
    assert snapshot.load(path, "key") == VALUE


def _restarted(cache: Path, git: object, revision: Revision) -> DeclarationLoader:
    loader = DeclarationLoader(cache_file=cache)
    loader.load(GitTreeSource(git, revision), revision)  # type: ignore[arg-type]
    return loader


@settings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(st.lists(edits(), min_size=1, max_size=4), min_size=2, max_size=5),
       saved_at=st.integers(0, 3))
def test_a_restart_from_any_snapshot_loads_like_a_fresh_loader(
    history: list[list[tuple[str, str, str]]], saved_at: int
) -> None:
    with TemporaryDirectory() as tmp:
        repo = Repo(Path(tmp) / "repo")
        cache = Path(tmp) / "state" / "declarations.cache"
        loader = DeclarationLoader(cache_file=cache)
        revisions: list[Revision] = []
        for number, step in enumerate(history):
            for edit in step:
                apply(repo.root, edit)
            revisions.append(Revision(repo.commit()))
            git = open_repository(repo.root)
            loader.load(GitTreeSource(git, revisions[-1]), revisions[-1])
            loader.save_cache()
            if number == min(saved_at, len(history) - 1):
                loader.save_snapshot()  # a later cycle: the snapshot is written
        snapshotted = revisions[min(saved_at, len(history) - 1)]
        assert cache.with_name("declarations.snapshot").exists()
        for revision in (revisions[-1], snapshotted, revisions[0]):
            fresh = DeclarationLoader().load(GitTreeSource(git, revision), revision)
            restarted = DeclarationLoader(cache_file=cache)
            assert_same(restarted.load(GitTreeSource(git, revision), revision), fresh)
            if revision == snapshotted:
                assert restarted.stats.validated == 0  # nothing validated again
            # And it goes on loading like any loader.
            for later in revisions:
                fresh = DeclarationLoader().load(GitTreeSource(git, later), later)
                assert_same(restarted.load(GitTreeSource(git, later), later), fresh)


def test_a_damaged_snapshot_loads_the_slow_way(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "state" / "declarations.cache"
    repo.write({f"t{i}.yaml": task(f"t{i}") for i in range(20)})
    revision = Revision(repo.commit())
    repo.write({"t3.yaml": task("t3", "  command: [python3, -c, 'print(3)']\n")})
    later = Revision(repo.commit())
    git = open_repository(repo.root)
    first = DeclarationLoader(cache_file=cache)
    desired = first.load(GitTreeSource(git, revision), revision)
    first.save_cache()
    first.save_snapshot()
    then = DeclarationLoader().load(GitTreeSource(git, later), later)
    saved = cache.with_name("declarations.snapshot")
    whole = saved.read_bytes()
    assert _restarted(cache, git, revision).stats.validated == 0
    # Cut short or replaced: nothing is believed. The end flipped: the first section (what
    # the load of that commit returned) is intact, the second (to go on from) is not.
    for damaged, validated in ((whole[: len(whole) // 2], 20), (b"junk", 20),
                               (whole[:-1] + bytes([whole[-1] ^ 1]), 0)):
        saved.write_bytes(damaged)
        loader = DeclarationLoader(cache_file=cache)
        assert_same(loader.load(GitTreeSource(git, revision), revision), desired)
        assert loader.stats.validated == validated
        assert_same(loader.load(GitTreeSource(git, later), later), then)
        assert loader.stats.validated == (1 if validated else 20)
