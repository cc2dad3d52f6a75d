"""The persisted parse cache: saving after a commit appends what changed, a restart reads
back exactly what was saved, and damage costs parsing again, never a wrong result."""

from __future__ import annotations

from pathlib import Path

from reconciler.declarations.cache import CacheFile, write_cache
from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import DesiredState
from reconciler.declarations.loader import DeclarationLoader
from tests.declarations.repo import Repo, task

CMD = "  command: [python3, -c, 'print(1)']\n"


def _restart(cache: Path, repo: Repo) -> tuple[DesiredState, int]:
    loader = DeclarationLoader(cache_file=cache)
    desired = loader.load(DirectorySource(repo.root))
    return desired, loader.stats.parsed


def test_a_save_after_a_one_file_change_appends_it(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "state" / "declarations.cache"
    repo.write({f"t{i}.yaml": task(f"t{i}") for i in range(30)})
    loader = DeclarationLoader(cache_file=cache)
    loader.load(DirectorySource(repo.root))
    loader.save_cache()
    snapshot = cache.stat().st_size
    repo.write({"t7.yaml": task("t7", CMD + "  retries: 1\n")})
    desired = loader.load(DirectorySource(repo.root))
    loader.save_cache()
    assert 0 < cache.stat().st_size - snapshot < 2000
    loader.save_cache()  # nothing changed since: nothing written
    assert cache.stat().st_size - snapshot < 2000
    restarted, parsed = _restart(cache, repo)
    assert (restarted, parsed) == (desired, 0)


def test_a_damaged_end_costs_only_what_it_held(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "declarations.cache"
    repo.write({f"t{i}.yaml": task(f"t{i}") for i in range(10)})
    loader = DeclarationLoader(cache_file=cache)
    loader.load(DirectorySource(repo.root))
    loader.save_cache()
    repo.write({"t3.yaml": task("t3", CMD + "  retries: 3\n")})
    desired = loader.load(DirectorySource(repo.root))
    loader.save_cache()
    # A crash while appending: the last record is cut short.
    cache.write_bytes(cache.read_bytes()[:-5])
    restarted, parsed = _restart(cache, repo)
    assert (restarted, parsed) == (desired, 1)
    # The next save writes the file whole again, without the damaged end.
    again = DeclarationLoader(cache_file=cache)
    again.load(DirectorySource(repo.root))
    again.save_cache()
    assert _restart(cache, repo) == (desired, 0)


def test_changes_outgrowing_the_snapshot_are_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "declarations.cache"
    cache = CacheFile(path)
    entries = {("a.yaml", "0" * 40): b"x" * 100}
    cache.save(entries, entries, ())
    sizes = []
    for i in range(1, 5):  # 1.2 MB of changes to a snapshot of 300 bytes
        key = (f"{i}.yaml", str(i) * 40)
        entries[key] = bytes([i]) * 300_000
        dropped = [("a.yaml", "0" * 40)] if i == 4 else []
        for gone in dropped:
            del entries[gone]
        cache.save(entries, [key], dropped)
        sizes.append(path.stat().st_size)
    assert sizes[2] > sizes[1] > sizes[0]  # appended
    assert sizes[3] == write_cache(tmp_path / "whole.cache", entries)  # written whole
    assert CacheFile(path).read() == entries


def test_a_cache_of_another_format_is_ignored(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "declarations.cache"
    repo.write({"t.yaml": task("t")})
    loader = DeclarationLoader(cache_file=cache)
    loader.load(DirectorySource(repo.root))
    loader.save_cache()
    data = bytearray(cache.read_bytes())
    data[60] ^= 0xFF  # inside the header record: its checksum no longer matches
    cache.write_bytes(bytes(data))
    assert CacheFile(cache).read() == {}
    assert _restart(cache, repo)[1] == 1


def test_a_cache_that_cannot_be_written_costs_nothing_but_the_next_parse(
    repo: Repo, tmp_path: Path
) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state folder should be\n")
    cache = blocked / "declarations.cache"
    repo.write({"t.yaml": task("t")})
    loader = DeclarationLoader(cache_file=cache)
    assert list(loader.load(DirectorySource(repo.root)).entries) == ["task/t"]
    loader.save_cache()  # refused by the file system: no exception
    blocked.unlink()
    loader.save_cache()  # what was not saved is saved now
    assert _restart(cache, repo)[1] == 0
