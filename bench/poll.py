"""No-op poll: `GitRemote.remote_head` against `git ls-remote`, on the same `git daemon`.

The daemon polls every interval; when nothing changed, this round trip is all it costs.
Also times a fetch of a one-file change, the work that follows a poll that saw a new head.
Fetches of a branch with more than about 20 commits take one more negotiation round trip,
which on loopback costs a ~40 ms delayed ACK (the git CLI pays it too), so both a short and a
long history are shown.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from loguru import logger

from reconciler.source.remote import GitRemote
from tests.support.gitservers import GIT, GitDaemon, GitUser, git_env, make_bare_remote

RUNS = 50
FOLDERS = 20
FILES_PER_FOLDER = 50


def _median_ms(action: Callable[[], object], runs: int = RUNS) -> float:
    action()  # warm up: connections, caches, imports
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def _ls_remote(url: str, protocol: int) -> None:
    subprocess.run(
        [GIT, "-c", f"protocol.version={protocol}", "ls-remote", url, "refs/heads/main"],
        env=git_env(), check=True, capture_output=True,
    )


def main() -> None:
    logger.disable("reconciler")
    with TemporaryDirectory(prefix="bench-poll-") as tmp:
        root = Path(tmp)
        files = {
            f"d{d:02}/task{f:03}.yaml": f"kind: Task\nmetadata: {{name: t{d}-{f}}}\n"
            for d in range(FOLDERS)
            for f in range(FILES_PER_FOLDER)
        }
        bare = make_bare_remote(root / "served" / "repo.git", files)
        with GitDaemon(root / "served") as daemon:
            url = daemon.url("repo.git")
            remote = GitRemote(url, root / "state")
            remote.fetch(["main"])

            ours = _median_ms(lambda: remote.remote_head("main"))
            cli_v2 = _median_ms(lambda: _ls_remote(url, 2), runs=RUNS // 2)
            cli_v0 = _median_ms(lambda: _ls_remote(url, 0), runs=RUNS // 2)

            user = GitUser(str(bare), root / "user").clone()
            short = _fetch_changes(remote, user, 5)
            for n in range(30):
                user.commit({"d01/task000.yaml": f"history: {n}\n"}, f"History {n}")
            user.push()
            remote.fetch(["main"])
            long = _fetch_changes(remote, user, 5)

    print(f"repository: {len(files)} files in {FOLDERS} folders, served by git daemon")
    print(f"no-op poll, GitRemote.remote_head:       {ours:7.2f} ms (median of {RUNS})")
    print(f"no-op poll, git ls-remote (protocol v2): {cli_v2:7.2f} ms")
    print(f"no-op poll, git ls-remote (protocol v0): {cli_v0:7.2f} ms")
    print(f"ratio git ls-remote v2 / remote_head:    {cli_v2 / ours:7.1f}x")
    print(f"ratio git ls-remote v0 / remote_head:    {cli_v0 / ours:7.1f}x")
    print(f"fetch of a one-file change, 1-5 commits: {short:7.2f} ms (median of 5)")
    print(f"fetch of a one-file change, 35+ commits: {long:7.2f} ms (median of 5)")


def _fetch_changes(remote: GitRemote, user: GitUser, count: int) -> float:
    samples = []
    for n in range(count):
        user.commit({"d00/task000.yaml": f"kind: Task\nrevision: {n}\n"}, f"Change {n}")
        user.push()
        started = time.perf_counter()
        remote.fetch(["main"])
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


if __name__ == "__main__":
    main()
