"""In-memory parts behind the daemon's ports, so a whole cycle runs as a table row: a Git source
holding commits as dicts of files, and an executor whose runs the test finishes by hand. The
declarations loader stays the real one (it reads the commits through `MemoryFiles`)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from reconciler.declarations.entries import Entry
from reconciler.declarations.files import FileEntry, FileKind, blob_id, tree_id
from reconciler.runs import RunReport, RunRequest, StackResult
from reconciler.source.branchchange import StatusBranchChange
from reconciler.source.verdicts import SignedCommit
from reconciler.types import EntryId, Revision, RunId, RunState, SpecHash


class MemoryFiles:
    """One commit's files as a `FileSource`, with the object ids Git would give them."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._files = dict(files)

    def walk(self, prefix: str = ".") -> Iterator[FileEntry]:
        top = self.stat(prefix)
        if top is None:
            return
        if top.kind is not FileKind.DIRECTORY:
            yield top
            return
        for path in sorted(self._files):
            if prefix == "." or path.startswith(prefix.rstrip("/") + "/"):
                yield FileEntry(path=path, kind=FileKind.FILE, oid=blob_id(self._files[path]))

    def stat(self, path: str) -> FileEntry | None:
        if path in self._files:
            return FileEntry(path=path, kind=FileKind.FILE, oid=blob_id(self._files[path]))
        folder = "" if path == "." else path.rstrip("/") + "/"
        if not any(p.startswith(folder) for p in self._files):
            return None
        return FileEntry(path=path, kind=FileKind.DIRECTORY, oid=self._tree(folder))

    def read(self, path: str) -> bytes:
        try:
            return self._files[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    def _tree(self, folder: str) -> str:
        names: dict[str, tuple[FileKind, str]] = {}
        for path in self._files:
            if not path.startswith(folder):
                continue
            name, _, rest = path[len(folder):].partition("/")
            if rest:
                names[name] = (FileKind.DIRECTORY, self._tree(f"{folder}{name}/"))
            else:
                names[name] = (FileKind.FILE, blob_id(self._files[path]))
        return tree_id((name, kind, oid) for name, (kind, oid) in names.items())


class MemorySource:
    """A `SourcePort` over commits held in memory: `push` makes a commit of the tracked
    branch; the status branch is a dict of files, with the message of each status commit."""

    url = "memory://world"

    def __init__(self, files: Mapping[str, str], *, branch: str = "main",
                 status_branch: str = "reconciler-status") -> None:
        self.branch = branch
        self.status_branch = status_branch
        self.commits: dict[Revision, dict[str, bytes]] = {}
        self.tip: Revision | None = None
        self.status: dict[str, bytes] = {}
        self.status_commits: list[str] = []
        self.push(files)

    def push(self, changes: Mapping[str, str | None]) -> Revision:
        """A commit of the tracked branch: each path set to its text, or deleted for None."""
        files = dict(self.commits[self.tip]) if self.tip is not None else {}
        for path, text in changes.items():
            if text is None:
                files.pop(path, None)
            else:
                files[path] = text.encode()
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{self.tip}\0{len(self.commits)}".encode())
        for path in sorted(files):
            digest.update(f"{path}\0".encode() + files[path] + b"\0")
        self.tip = Revision(digest.hexdigest())
        self.commits[self.tip] = files
        return self.tip

    def head(self) -> Revision | None:
        return self.tip

    def fetch(self) -> Revision:
        assert self.tip is not None
        return self.tip

    def files(self, revision: Revision) -> MemoryFiles:
        return MemoryFiles(self.commits[revision])

    def only_status_changed(self, old: Revision, new: Revision) -> bool:
        return False  # the status branch is another branch

    def signed_commit(self, revision: Revision) -> SignedCommit:
        raise KeyError(revision)

    def read_status(self) -> dict[str, bytes]:
        return dict(self.status)

    def write_status(self, changes: Mapping[str, bytes | None], message: str) -> Revision | None:
        for path, data in changes.items():
            if data is None:
                self.status.pop(path, None)
            else:
                self.status[path] = data
        self.status_commits.append(message)
        return Revision(f"{len(self.status_commits):040x}")

    def status_changed(self) -> StatusBranchChange | None:
        return None


class ManualExecutor:
    """An `Executor` whose runs stay pending until the test finishes them (`finish`), or,
    with `ends`, end so at the first poll after they were submitted."""

    name = "manual"

    def __init__(self, *, slots: int = 4, ends: RunState | None = None) -> None:
        self.slots = slots
        self.ends = ends
        self.submitted: list[RunRequest] = []
        self.runs: dict[RunId, RunReport] = {}
        self.acknowledged: set[RunId] = set()
        self.expected: list[EntryId] = []
        self._changed = threading.Condition(threading.RLock())

    def free_slots(self) -> int:
        return max(0, self.slots - sum(not r.state.finished for r in self.runs.values()))

    def expect(self, entries: Sequence[Entry]) -> None:
        self.expected = [e.id for e in entries]

    def submit(self, request: RunRequest) -> None:
        with self._changed:
            if request.run_id in self.runs:
                return
            self.submitted.append(request)
            self.runs[request.run_id] = RunReport(
                run_id=request.run_id, entry_id=request.entry.id,
                spec_hash=request.entry.spec_hash, operation=request.operation,
                trigger=request.trigger, attempt=request.attempt, revision=request.revision,
                state=RunState.PENDING, started_at=request.requested_at)
            self._changed.notify_all()

    def flush(self) -> None:
        """Submits take effect at once."""

    def on_change(self, callback: Callable[[], None]) -> bool:
        return False

    def wait_submitted(self, count: int, *, timeout: float = 30) -> RunRequest:
        """The `count`-th run submitted, once it is (by another thread)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.submitted) >= count, timeout):
                raise AssertionError(f"{count} run(s) not submitted within {timeout}s")
            return self.submitted[count - 1]

    def finish(self, run_id: RunId, state: RunState = RunState.SUCCEEDED, *,
               result: StackResult | None = None, message: str = "",
               after: timedelta = timedelta(seconds=1)) -> None:
        with self._changed:
            run = self.runs[run_id]
            started = run.started_at or datetime.now(UTC)
            self.runs[run_id] = run.model_copy(update={
                "state": state, "finished_at": started + after, "message": message,
                "exit_code": 0 if state is RunState.SUCCEEDED else 1,
                "result": result})
            self._changed.notify_all()

    def unfinished(self) -> list[RunId]:
        return [r.run_id for r in self.runs.values() if not r.state.finished]

    def poll(self) -> Sequence[RunReport]:
        with self._changed:
            if self.ends is not None:
                for run_id in self.unfinished():
                    self.finish(run_id, self.ends)
            return [r for r in self.runs.values() if r.run_id not in self.acknowledged]

    def acknowledge(self, run_ids: Sequence[RunId]) -> None:
        with self._changed:
            self.acknowledged.update(i for i in run_ids if self.runs[i].state.finished)

    def latest(self, versions: Mapping[EntryId, SpecHash],
               known: Collection[RunId] = ()) -> Sequence[RunReport]:
        return []

    def logs(self, run_id: RunId) -> str:
        return ""

    def cancel(self, run_id: RunId) -> None:
        self.finish(run_id, RunState.FAILED, message="cancelled")

    def close(self) -> None:
        pass
