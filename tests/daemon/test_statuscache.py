"""Status records read back at a restart from the state dir: what parsing the status files
gives, with only the files not read before parsed, and whatever is wrong with the cache
costing a parse, never a wrong record."""

from __future__ import annotations

from pathlib import Path

from reconciler import status
from reconciler.daemon.statuscache import StatusCache
from reconciler.records import EntryRecord, fold_report, new_record
from reconciler.redact import Redactor
from reconciler.types import EntryId, Kind, RunState
from tests.status.test_status import REV, report


def files_of(count: int, *, failed: int | None = None) -> dict[str, bytes]:
    records: dict[EntryId, EntryRecord] = {}
    for n in range(count):
        entry = EntryId(f"task/t{n}")
        state = RunState.FAILED if n == failed else RunState.SUCCEEDED
        records[entry] = fold_report(new_record(entry, Kind.TASK, f"t{n}"),
                                     report(state, entry=entry, run_id=f"r{n}"))
    return status.render(records, [], branch="main", revision=REV, redact=Redactor())


def test_a_restart_parses_only_what_it_did_not_read_before(tmp_path: Path) -> None:
    path = tmp_path / "state" / "status.snapshot"
    files = files_of(20)
    first = StatusCache(path)
    assert first.parse(files) == status.parse(files)
    assert first.parsed == 20
    first.save()
    again = StatusCache(path)
    assert again.parse(files) == status.parse(files)
    assert again.parsed == 0
    changed = {**files_of(20, failed=7), "status/tasks/junk.yaml": b"{not: [yaml"}
    records, problems = again.parse(changed)
    assert (records, problems) == status.parse(changed)
    assert len(problems) == 1
    assert again.parsed == 1  # t7; the unreadable file is not a record
    again.save()
    last = StatusCache(path)
    assert last.parse(changed) == status.parse(changed)
    assert last.parsed == 0


def test_a_damaged_or_foreign_cache_costs_a_parse(tmp_path: Path) -> None:
    path = tmp_path / "status.snapshot"
    files = files_of(5)
    cache = StatusCache(path)
    cache.parse(files)
    cache.save()
    whole = path.read_bytes()
    for damaged in (whole[:-3], whole[:40], b"", whole[:-1] + bytes([whole[-1] ^ 1])):
        path.write_bytes(damaged)
        again = StatusCache(path)
        assert again.parse(files) == status.parse(files)
        assert again.parsed == 5
    path.write_bytes(whole)
    path.chmod(0o640)
    again = StatusCache(path)
    assert again.parse(files) == status.parse(files)
    assert again.parsed == 5


def test_without_a_state_dir_it_parses(tmp_path: Path) -> None:
    files = files_of(3)
    cache = StatusCache(None)
    assert cache.parse(files) == status.parse(files)
    cache.save()
    assert list(tmp_path.iterdir()) == []
