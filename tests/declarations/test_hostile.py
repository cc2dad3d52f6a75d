"""The hostile corpus (`hostile_cases`) through `reconciler validate` as its own process, so
that a crash (a signal), a traceback or a stall would show: every file answered with
located errors of its own, in bounded output and time. Then each case on its own, in this
process and with the parse cache, timed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.declarations.named import still_named
from tests.declarations.hostile_cases import EXPECTED, OTHER_YAML, corpus

LOCATED = re.compile(r"^repo/([^:]+\.ya?ml):(\d+):(\d+): \S")
MAX_OUTPUT = 256 * 1024
"""Bytes of output for the whole corpus: 50 errors a file at most, each line bounded."""
TIME_BOUND = 120.0
"""Seconds, for a loaded 2-core machine; the corpus takes about five on an idle one."""


@pytest.mark.timeout(TIME_BOUND * 3)
def test_validate_answers_every_hostile_file_with_located_errors(tmp_path: Path) -> None:
    names = corpus(tmp_path / "repo")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "repo"],
        cwd=tmp_path, capture_output=True, timeout=TIME_BOUND * 2, check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")[-2000:]
    assert len(done.stdout) < MAX_OUTPUT
    by_file: dict[str, list[str]] = defaultdict(list)
    for line in done.stdout.decode().splitlines():
        match = LOCATED.match(line)
        assert match is not None, line
        by_file[match.group(1)].append(line)
    assert set(by_file) == set(names) - OTHER_YAML
    for name, expected in EXPECTED.items():
        assert any(expected in line for line in by_file[name]), (name, by_file[name][:3])
    for name, lines in by_file.items():
        assert len(lines) <= 51, name
    assert elapsed < TIME_BOUND
    print(f"\nhostile corpus: {len(names)} files, {len(done.stdout)} bytes, {elapsed:.1f} s")


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "all"


ALONE = sorted(name for name in EXPECTED if not name.startswith("cycle-"))


@pytest.mark.parametrize("name", [*ALONE, "cycle-a.yaml"])
def test_each_hostile_file_alone_is_an_error_of_its_own(
    tmp_path: Path, cases: Path, name: str
) -> None:
    if not cases.exists():
        corpus(cases)
    root = tmp_path / "repo"
    root.mkdir()
    # A cycle needs all of its parts.
    parts = [p for p in EXPECTED if p.startswith("cycle-")] if name.startswith("cycle-") else [name]
    for part in parts:
        (root / part).write_bytes((cases / part).read_bytes())
    loader = DeclarationLoader(cache_file=tmp_path / "state" / "declarations.cache")
    started = time.monotonic()
    desired = loader.load(DirectorySource(root))
    loader.save_cache()
    elapsed = time.monotonic() - started
    for part in parts:
        mine = [str(e) for e in desired.errors if e.location.path == part]
        assert any(EXPECTED[part] in line for line in mine), mine[:3]
    assert all(e.location.line >= 1 and e.location.column >= 1 for e in desired.errors)
    assert not desired.entries or name == "defaults-timeout.yaml"
    # Read back from the cache, the answer is the same.
    again = DeclarationLoader(cache_file=tmp_path / "state" / "declarations.cache")
    assert [str(e) for e in again.load(DirectorySource(root)).errors] == [
        str(e) for e in desired.errors
    ]
    assert elapsed < TIME_BOUND
    print(f"\n{name}: {elapsed:.2f} s, {len(mine)} errors")


def test_names_and_values_cannot_break_the_one_line_format(tmp_path: Path) -> None:
    """A file name with a newline and a byte that is not UTF-8, a key with an escape
    sequence: shown escaped, one line per problem."""
    root = tmp_path / "repo"
    root.mkdir()
    header = b"apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: t}\n"
    (root / os.fsdecode(b"bad\xff\nname.yaml")).write_bytes(header + b"spec: {}\n")
    (root / "esc.yaml").write_bytes(
        header.replace(b"name: t", b"name: u") + b'spec:\n  command: [x]\n  "\\e[31m\\n": 1\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "repo"],
        cwd=tmp_path, capture_output=True, timeout=TIME_BOUND, check=False,
    )
    assert done.returncode == 1, done.stderr.decode(errors="replace")[-2000:]
    assert done.stdout.decode().splitlines() == [
        "repo/bad\\udcff\\x0aname.yaml:4:1: spec.command: is required",
        'repo/esc.yaml:6:3: spec["\\x1b[31m\\x0a"]: unknown field; expected one of args, '
        "command, dependsOn, env, files, image, nodeSelector, repository, resources, retries, "
        "schedule, secretEnv, serviceAccountName, suspend, timeZone, timeout, tolerations",
    ]


def test_still_named_reads_the_hostile_corpus_within_bounds(cases: Path) -> None:
    if not cases.exists():
        corpus(cases)
    stacks = ["deep-flow-seq", "billion-laughs", "near-group-drop", "near-key-upper",
              "no-api-version", "path-long", "merge-bomb", "big-file", "cycle-1", "nowhere"]
    started = time.monotonic()
    found = still_named(DirectorySource(cases), ".", stacks)
    assert time.monotonic() - started < TIME_BOUND
    # Stacks (and files too broken to tell) name them; a Task and nothing at all do not.
    assert sorted(found) == sorted(set(stacks) - {"cycle-1", "nowhere"})
