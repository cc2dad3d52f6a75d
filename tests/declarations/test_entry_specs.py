"""What each kind's spec answers about itself, and the neutral answers of the base that a new
kind gets until it says otherwise."""

from __future__ import annotations

import pytest

from reconciler.declarations.bases import EntrySpec
from reconciler.declarations.models import (
    DefaultsSpec,
    Repository,
    StackSpec,
    TaskSpec,
)


def test_the_base_answers_that_an_entry_asks_for_nothing_of_its_own() -> None:
    spec = EntrySpec.model_construct()
    assert spec.own_defaults(DefaultsSpec(image="python:3.12")) == {}
    assert (spec.image_to_run(), spec.engine_to_run(), spec.repository_to_clone()) == (
        None, None, None)
    assert EntrySpec.on_removal(None, clean=True) == (False, "")


def test_a_task_takes_its_image_from_defaults_and_clones_its_repository() -> None:
    repository = Repository(url="https://example.com/org/app.git")
    task = TaskSpec(command=["true"], repository=repository)
    assert task.own_defaults(DefaultsSpec(image="python:3.12")) == {"image": "python:3.12"}
    assert task.model_copy(update={"image": "alpine"}).image_to_run() == "alpine"
    assert task.repository_to_clone() == repository
    assert task.engine_to_run() is None
    assert TaskSpec.on_removal(task, clean=True) == (False, "")


def test_a_stack_runs_its_engine_and_has_no_image_of_its_own() -> None:
    stack = StackSpec(path="stacks/net", engine="terraform")
    assert stack.engine_to_run() == "terraform"
    assert stack.own_defaults(DefaultsSpec(image="python:3.12")) == {}
    assert (stack.image_to_run(), stack.repository_to_clone()) == (None, None)


@pytest.mark.parametrize(
    ("prune", "clean", "expected"),
    [
        (None, True, (False, "prune is off: its resources are left in place")),
        (False, True, (False, "prune is off: its resources are left in place")),
        (True, False, (False, "prune is on, but nothing is destroyed while the head commit "
                              "has errors")),
        (True, True, (True, "prune is on: merging destroys this stack's resources")),
    ],
)
def test_removing_a_stack_destroys_only_with_prune_on_a_clean_commit(
    prune: bool | None, clean: bool, expected: tuple[bool, str]
) -> None:
    spec = None if prune is None else StackSpec(path="stacks/net", prune=prune)
    assert StackSpec.on_removal(spec, clean=clean) == expected
