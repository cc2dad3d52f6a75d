"""What `diff` calls a change, computed from the desired states of two commits."""

from __future__ import annotations

from reconciler.declarations.changes import compare
from tests.declarations.repo import HEADER, MAIN_TF, Repo, stack, task

CMD = "  command: [python3, -c, 'print(1)']\n"


def test_a_fixed_entry_is_added_again(repo: Repo) -> None:
    base = repo.write({"t.yaml": task("t", CMD + "  timeout: soon\n")}).load()
    head = repo.write({"t.yaml": task("t", CMD + "  timeout: 5m\n")}).load()
    diff = compare(base, head)
    assert [(c.id, c.change, c.note) for c in diff.added] == [
        ("task/t", "added", "fixed: it was invalid in the base commit")]
    assert not diff.invalid


def test_an_entry_in_a_broken_file_is_kept_not_removed(repo: Repo) -> None:
    base = repo.write({"t.yaml": task("t"), "u.yaml": task("u")}).load()
    head = repo.write({"t.yaml": task("t") + "  args: [\n"}).load()
    diff = compare(base, head)
    assert not diff.removed
    [kept] = diff.invalid
    assert (kept.id, kept.note) == (
        "task/t", "t.yaml failed to load: the entry is kept as it was, not removed")
    assert [str(e) for e in kept.errors] == [
        "t.yaml:8:1: invalid YAML: did not find expected node content (while parsing a flow "
        "node started on line 8)"]


def test_labels_alone_change_nothing_that_runs(repo: Repo) -> None:
    base = repo.write({"t.yaml": task("t", extra="  labels: {team: a}\n")}).load()
    head = repo.write({"t.yaml": task("t", extra="  labels: {team: b}\n")}).load()
    [change] = compare(base, head).changed
    assert change.rerun is False
    assert [(f.path, f.base, f.head) for f in change.fields] == [
        ("metadata.labels.team", "a", "b")]


def test_defaults_show_in_the_effective_spec(repo: Repo) -> None:
    defaults = HEADER + "kind: Defaults\nmetadata: {name: d}\nspec: {timeout: 10m}\n"
    base = repo.write({"d.yaml": defaults, "t.yaml": task("t"),
                       "s.yaml": stack("s", "st"), "st/main.tf": MAIN_TF}).load()
    head = repo.write({"d.yaml": defaults.replace("10m", "15m")}).load()
    diff = compare(base, head)
    assert [(c.id, [(f.path, f.base, f.head) for f in c.fields]) for c in diff.changed] == [
        ("stack/s", [("spec.timeout", "10m", "15m")]),
        ("task/t", [("spec.timeout", "10m", "15m")]),
    ]


def test_suspending_and_requests_show_without_a_new_version(repo: Repo) -> None:
    body = "  command: [python3, -c, 'print(1)']\n"
    base = repo.write({"t.yaml": task("t")}).load()
    head = repo.write({"t.yaml": task("t", body + "  suspend: true\n")}).load()
    [change] = compare(base, head).changed
    assert change.rerun is False
    assert [(f.path, f.base, f.head) for f in change.fields] == [("spec.suspend", False, True)]
    asked = "  annotations: {reconciler.io/run-requested: 'fix 1'}\n"
    head = repo.write({"t.yaml": task("t", extra=asked)}).load()
    [change] = compare(base, head).changed
    assert change.rerun is False
    assert change.note == "run requested: it runs once more at its version"
