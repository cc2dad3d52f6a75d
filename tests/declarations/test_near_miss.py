"""Near misses of our apiVersion are declarations with an error, never other YAML, so a
typo cannot make an entry disappear (and a pruned Stack be destroyed); and `still_named`
finds any document still naming a Stack before it is destroyed."""

from __future__ import annotations

import pytest

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.named import refusal, still_named
from reconciler.declarations.ours import may_claim
from reconciler.declarations.parse import parse_file
from reconciler.source.tree import GitTreeSource, open_repository
from tests.declarations.repo import HEADER, MAIN_TF, Repo, stack

BODY = "kind: Stack\nmetadata:\n  name: db\nspec:\n  path: st\n"

NEAR_MISSES = [
    pytest.param(
        "apiVersion: reconciler.oi/v1alpha1\n",
        "db.yaml:1:13: apiVersion: unsupported apiVersion 'reconciler.oi/v1alpha1'; this "
        "reconciler reads reconciler.io/v1alpha1",
        id="group-swap",
    ),
    pytest.param(
        "apiVersion: reconcilr.io/v1alpha1\n",
        "db.yaml:1:13: apiVersion: unsupported apiVersion 'reconcilr.io/v1alpha1'; this "
        "reconciler reads reconciler.io/v1alpha1",
        id="group-drop",
    ),
    pytest.param(
        "apiVersion: reconciler.io/v1alpa1\n",
        "db.yaml:1:13: apiVersion: unsupported apiVersion 'reconciler.io/v1alpa1'; this "
        "reconciler reads reconciler.io/v1alpha1",
        id="version",
    ),
    pytest.param(
        "apiversion: reconciler.io/v1alpha1\n",
        "db.yaml:1:1: apiversion: unknown field; did you mean 'apiVersion'? (this reconciler "
        "reads reconciler.io/v1alpha1)",
        id="key-lower",
    ),
    pytest.param(
        "APIVersion: reconciler.io/v1alpha1\n",
        "db.yaml:1:1: APIVersion: unknown field; did you mean 'apiVersion'? (this reconciler "
        "reads reconciler.io/v1alpha1)",
        id="key-upper",
    ),
    pytest.param(
        "api_version: Reconciler.io/v1alpha1\n",
        "db.yaml:1:1: api_version: unknown field; did you mean 'apiVersion'? (this reconciler "
        "reads reconciler.io/v1alpha1)",
        id="key-snake",
    ),
    pytest.param(
        "", "db.yaml:1:1: apiVersion: is required: reconciler.io/v1alpha1", id="missing"
    ),
]


@pytest.mark.parametrize(("header", "expected"), NEAR_MISSES)
def test_a_near_miss_is_an_error_and_its_entry_invalid(
    repo: Repo, header: str, expected: str
) -> None:
    repo.write({"db.yaml": header + BODY, "st/main.tf": MAIN_TF})
    desired = repo.load()
    assert [str(e) for e in desired.errors] == [expected]
    assert list(desired.invalid) == ["stack/db"]
    assert not desired.entries


@pytest.mark.parametrize(("header", "expected"), NEAR_MISSES)
def test_the_cheap_screen_lets_every_near_miss_through(header: str, expected: str) -> None:
    assert may_claim((header + BODY).encode())
    assert parse_file((header + BODY).encode()).documents


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: tekton.dev/v1beta1\nkind: Task\nmetadata: {name: build}\nspec: {}\n",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\n",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
        "name: CI\non: [push]\njobs: {build: {runs-on: ubuntu-latest}}\n",
    ],
)
def test_other_tools_yaml_stays_other_yaml(repo: Repo, text: str) -> None:
    repo.write({"other.yaml": text})
    desired = repo.load()
    assert not desired.errors
    assert not desired.files


def test_a_typo_keeps_the_stack_from_being_removed(repo: Repo) -> None:
    repo.write({"db.yaml": stack("db", "st", "  prune: true\n"), "st/main.tf": MAIN_TF})
    assert list(repo.load().entries) == ["stack/db"]
    repo.write({"db.yaml": stack("db", "st").replace("reconciler.io", "reconciler.oi")})
    desired = repo.load()
    assert list(desired.invalid) == ["stack/db"]
    assert not desired.clean


# still_named


def test_still_named_finds_stacks_in_every_state_of_their_file(repo: Repo) -> None:
    repo.write({
        "typo.yaml": "apiVersion: reconcilr.io/v1alpha1\nkind: stack\nmetadata: {name: a}\n",
        "nokind.yml": "x: 1\n---\nmetadata:\n  name: b\n",
        "broken.yaml": "metadata:\n  name: c\n  bad: [\n",
        "deep.yaml": "metadata: {name: d}\nx: " + "[" * 5000 + "]" * 5000 + "\n",
        "near.yaml": "kind: Stak\nmetadata: {name: e}\n",
        "deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: f}\n",
        "task.yaml": HEADER + "kind: Task\nmetadata: {name: g}\nspec: {command: [x]}\n",
        "readme.md": "metadata: {name: h}\n",
        "inner/valid.yaml": stack("i", "st"),
        "mention.yaml": "# the stack j is gone\nnames: [j]\n",
    })
    found = still_named(DirectorySource(repo.root), ".", "abcdefghijk")
    assert {n: str(loc) for n, loc in found.items()} == {
        "a": "typo.yaml:1:1",
        "b": "nokind.yml:3:1",
        "c": "broken.yaml:2:1",
        "d": "deep.yaml:1:1",
        "e": "near.yaml:1:1",
        "i": "inner/valid.yaml:1:1",
    }


def test_still_named_looks_only_under_the_declarations_folder_of_a_commit(repo: Repo) -> None:
    repo.write({"decl/a.yaml": stack("a", "st"), "elsewhere/b.yaml": stack("b", "st")})
    commit = repo.commit()
    files = GitTreeSource(open_repository(repo.root), commit)
    found = still_named(files, "decl", ["a", "b", "c"])
    assert {n: str(loc) for n, loc in found.items()} == {"a": "decl/a.yaml:1:1"}
    assert still_named(files, "decl", []) == {}
    assert refusal(found["a"]) == "not destroyed: still named at decl/a.yaml:1"


def test_a_kind_in_the_wrong_case_is_known_for_what_it_means(repo: Repo) -> None:
    repo.write({
        "db.yaml": HEADER + BODY.replace("kind: Stack", "kind: stack"),
        "st/main.tf": MAIN_TF,
        "defaults.yaml": HEADER + "kind: defaults\nmetadata: {name: d}\nspec: {namespace: x}\n",
        "t.yaml": HEADER + "kind: Task\nmetadata: {name: t}\nspec: {command: [x]}\n",
    })
    desired = repo.load()
    assert [str(e) for e in desired.errors] == [
        "db.yaml:2:7: kind: unknown kind 'stack'; expected one of Task, Stack, Defaults (did "
        "you mean 'Stack'?)",
        "defaults.yaml:2:7: kind: unknown kind 'defaults'; expected one of Task, Stack, "
        "Defaults (did you mean 'Defaults'?)",
    ]
    # The Defaults are unknown: the task does not run without them.
    assert sorted(desired.invalid) == ["stack/db", "task/t"]
    assert not desired.entries
