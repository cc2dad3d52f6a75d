"""What the loader makes of a repository: entries with Defaults applied, invalid entries that
are not mistaken for removed ones, incremental reloads and the persisted parse cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.types import EntryId
from tests.declarations.repo import HEADER, MAIN_TF, Repo, stack, task

CMD = "  command: [python3, -c, 'print(1)']\n"
DEFAULTS = HEADER + """kind: Defaults
metadata: {name: defaults}
spec:
  namespace: jobs
  image: python:3.12-slim
  timeout: 20m
  env: {TZ: UTC, LEVEL: info}
  resources:
    requests: {cpu: 50m, memory: 64Mi}
    limits: {memory: 256Mi}
  nodeSelector: {pool: batch}
"""


def test_multi_document_files_and_foreign_yaml(repo: Repo) -> None:
    repo.write({
        "all.yml": task("a") + "---\n# a comment\n" + task("b") + "---\n" + stack("s", "st"),
        "st/main.tf": MAIN_TF,
        ".github/workflows/ci.yaml": "on: push\njobs: {}\n",
        "k8s/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
        "notes.yaml": "- just\n- a list\n",
        "empty.yaml": "",
    })
    desired = repo.load()
    assert desired.clean
    assert sorted(desired.entries) == ["stack/s", "task/a", "task/b"]
    assert desired.files == {"all.yml"}
    assert str(desired.entries[EntryId("task/b")].location) == "all.yml:9:1"


def test_one_bad_file_hides_nothing_else(repo: Repo) -> None:
    repo.write({
        "good.yaml": task("good"),
        "broken.yaml": task("broken", "  command: [unclosed\n"),
        "invalid.yaml": task("typo", CMD + "  timeout: soon\n"),
    })
    desired = repo.load()
    assert sorted(desired.entries) == ["task/good"]
    # The typo'd entry is known, so it is marked Invalid rather than treated as removed.
    assert list(desired.invalid) == ["task/typo"]
    assert [e.field for e in desired.invalid[EntryId("task/typo")]] == ["spec.timeout"]
    assert desired.files_with_errors == {"broken.yaml"}
    assert not desired.clean


def test_unreadable_identity_protects_the_whole_file(repo: Repo) -> None:
    repo.write({"t.yaml": task("ok") + "---\n" + task("Not_A_Name")})
    desired = repo.load()
    assert list(desired.entries) == ["task/ok"]
    assert desired.files_with_errors == {"t.yaml"}


def test_defaults_are_merged_under_entries(repo: Repo) -> None:
    repo.write({
        "reconciler.yaml": DEFAULTS,
        "t.yaml": task("t", CMD + "  env: {LEVEL: debug, EXTRA: x}\n"
                       "  resources: {requests: {cpu: 500m}}\n"),
        "own.yaml": task("own", CMD + "  image: alpine:3\n  timeout: 90s\n"
                         "  nodeSelector: {pool: gpu}\n"),
        "s.yaml": stack("s", "st"),
        "st/main.tf": MAIN_TF,
    })
    desired = repo.load()
    t = desired.entries[EntryId("task/t")]
    assert t.task.env == {"TZ": "UTC", "LEVEL": "debug", "EXTRA": "x"}
    assert t.task.image == "python:3.12-slim"
    assert t.task.resources is not None
    assert t.task.resources.model_dump(exclude_none=True) == {
        "requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"memory": "256Mi"},
    }
    assert t.timeout_seconds == 1200
    assert t.task.node_selector == {"pool": "batch"}
    assert t.defaults.namespace == "jobs"
    own = desired.entries[EntryId("task/own")]
    assert (own.task.image, own.timeout_seconds, own.task.node_selector) == (
        "alpine:3", 90, {"pool": "gpu"})
    assert desired.entries[EntryId("stack/s")].stack.env == {"TZ": "UTC", "LEVEL": "info"}


def test_timeout_without_defaults_is_one_hour(repo: Repo) -> None:
    entries = repo.write({"t.yaml": task("t")}).load().entries
    assert entries[EntryId("task/t")].timeout_seconds == 3600


def test_broken_defaults_hold_every_entry(repo: Repo) -> None:
    repo.write({
        "reconciler.yaml": DEFAULTS.replace("timeout: 20m", "timeout: twenty"),
        "t.yaml": task("t"),
    })
    desired = repo.load()
    assert not desired.entries
    [error] = desired.invalid[EntryId("task/t")]
    assert str(error) == (
        "reconciler.yaml:7:12: spec.timeout: 'twenty' is not a duration: use whole numbers "
        "with units d, h, m, s, in that order, e.g. 30s, 5m, 1h30m"
    )
    assert len(desired.errors) == 1  # reported once, not once per entry


def test_defaults_in_a_file_that_does_not_parse_hold_every_entry(repo: Repo) -> None:
    repo.write({"reconciler.yaml": DEFAULTS + "  env: [\n", "t.yaml": task("t")})
    desired = repo.load()
    assert not desired.entries
    assert list(desired.invalid) == ["task/t"]
    assert desired.files_with_errors == {"reconciler.yaml"}


def test_repository_files_and_symlinks_inside(repo: Repo) -> None:
    repo.write({
        "t.yaml": task("t", CMD + "  files:\n    run.py: {path: ./scripts/run.py}\n"
                       "    inline.txt: hello\n"),
        "lib/run.py": "print('from the repository')\n",
        "s.yaml": stack("s", "stacks/current"),
        "stacks/v2/main.tf": MAIN_TF,
    })
    repo.link("scripts", "lib").link("stacks/current", "v2")
    desired = repo.load()
    assert desired.clean, desired.errors
    t = desired.entries[EntryId("task/t")]
    assert t.files == {"run.py": "print('from the repository')\n", "inline.txt": "hello"}
    assert list(t.sources) == ["scripts/run.py"]
    s = desired.entries[EntryId("stack/s")]
    assert s.sources == {"stacks/current": DirectorySource(repo.root).stat("stacks/v2").oid}


def test_declarations_folder(repo: Repo) -> None:
    repo.write({"deploy/t.yaml": task("t"), "elsewhere/u.yaml": task("u")})
    assert list(repo.load("deploy").entries) == ["task/t"]


def test_reload_parses_only_changed_files(repo: Repo) -> None:
    repo.write({f"tasks/t{i}.yaml": task(f"t{i}") for i in range(20)})
    loader = DeclarationLoader()
    first = loader.load(DirectorySource(repo.root))
    assert (loader.stats.files, loader.stats.parsed) == (20, 20)
    repo.write({"tasks/t3.yaml": task("t3", CMD + "  retries: 2\n")})
    second = loader.load(DirectorySource(repo.root))
    assert (loader.stats.files, loader.stats.parsed) == (20, 1)
    changed = [i for i, e in second.entries.items() if first.entries[i].spec_hash != e.spec_hash]
    assert changed == ["task/t3"]
    loader.load(DirectorySource(repo.root))
    assert loader.stats.parsed == 0


def test_persisted_cache_survives_a_restart(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "state" / "declarations.cache"
    repo.write({f"t{i}.yaml": task(f"t{i}") for i in range(5)} | {"bad.yaml": "kind: ["})
    repo.write({"bad.yaml": HEADER + "kind: [\n"})
    loader = DeclarationLoader(cache_file=cache)
    before = loader.load(DirectorySource(repo.root))
    loader.save_cache()
    restarted = DeclarationLoader(cache_file=cache)
    after = restarted.load(DirectorySource(repo.root))
    assert restarted.stats.parsed == 0
    assert restarted.stats.validated == 6
    assert after == before


def test_damaged_cache_is_ignored(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "declarations.cache"
    cache.write_bytes(b"\x80\x05not a pickle at all")
    loader = DeclarationLoader(cache_file=cache)
    desired = loader.load(DirectorySource(repo.write({"t.yaml": task("t")}).root))
    assert list(desired.entries) == ["task/t"]
    assert loader.stats.parsed == 1


def test_declarations_folder_outside_the_repository_is_refused() -> None:
    with pytest.raises(ValueError, match="inside the repository"):
        DeclarationLoader(path="../elsewhere")


def test_a_file_that_vanishes_while_loading_is_reported(repo: Repo) -> None:
    repo.write({"gone.yaml": task("gone"), "t.yaml": task("t")})
    files = DirectorySource(repo.root)
    list(files.walk())  # the folder as it was listed
    (repo.root / "gone.yaml").unlink()
    desired = DeclarationLoader().load(files)
    assert list(desired.entries) == ["task/t"]
    assert [str(e) for e in desired.errors] == [
        "gone.yaml:1:1: cannot read the file: No such file or directory"]
    assert desired.files_with_errors == {"gone.yaml"}
