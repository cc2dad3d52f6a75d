"""Hostile and mistyped declarations pushed to a running daemon: every other entry keeps
reconciling, nothing crashes, nothing is destroyed because of a spelling."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.daemon.conftest import World, task
from tests.daemon.test_stacks import module, resources, stack
from tests.e2e.harness import status_file

_HEAD = "apiVersion: reconciler.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\n"

HOSTILE = {
    "huge-timeout.yaml": _HEAD.format(kind="Task", name="huge-timeout")
    + "spec:\n  command: [x]\n  timeout: 1000000000d\n",
    "deep-flow.yaml": _HEAD.format(kind="Stack", name="deep-flow")
    + "spec:\n  path: stacks/x\n  vars:\n    v: " + "[" * 30_000 + "]" * 30_000 + "\n",
    "deep-block.yaml": _HEAD.format(kind="Task", name="deep-block") + "spec:\n  env:\n"
    + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(700)),
    "laughs.yaml": _HEAD.format(kind="Task", name="laughs") + "spec:\n  command: [x]\n"
    + "  args:\n    - &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"    - &{c} [{', '.join(['*' + p] * 10)}]\n"
              for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    "many-keys.yaml": _HEAD.format(kind="Task", name="many-keys") + "spec:\n  command: [x]\n"
    + "  env:\n" + "".join(f"    '{i}bad': x\n" for i in range(20_000)),
    "long-path.yaml": _HEAD.format(kind="Stack", name="long-path")
    + "spec:\n  path: " + "a" * 100_000 + "\n",
    "not-utf8.yaml": _HEAD.format(kind="Task", name="not-utf8")
    + "spec:\n  command: [\udcff]\n",  # a lone byte 0xff once encoded
    "cycle.yaml": "".join(
        "---\n" + _HEAD.format(kind="Task", name=f"c{i}")
        + f"spec:\n  command: [x]\n  dependsOn: [task/c{(i + 1) % 500}]\n" for i in range(500)),
}


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def test_a_hostile_commit_never_stops_the_other_entries(world: Callable[..., World]) -> None:
    w = world({"good.yaml": task("good"), "other.yaml": task("other")})
    w.settle()
    before = w.status("task/other")["lastRun"]["id"]
    w.user.commit({path: _bytes(text) for path, text in HOSTILE.items()}
                  | {"good.yaml": _bytes(task("good", "print('changed')"))}, "Hostile")
    w.user.push()
    w.settle(timeout=240)
    assert w.status("task/good")["lastRun"]["trigger"] == "changed"
    assert w.status("task/good")["phase"] == "Succeeded"
    assert w.status("task/other")["lastRun"]["id"] == before
    errors = status_file(w.bare, "status/errors.yaml")
    assert errors is not None
    failing = {e["path"] for e in errors["errors"]}
    assert failing == set(HOSTILE)
    assert all(e["line"] >= 1 and e["column"] >= 1 for e in errors["errors"])
    assert len(errors["errors"]) < 1_000  # capped per file, one error per cycle


_WEB = "{api}kind: Stack\nmetadata:\n  name: web\nspec:\n  path: stacks/web\n" \
    "  vars: {{size: small}}\n  prune: true\n"


@pytest.mark.engine
@pytest.mark.parametrize("typo", [
    "apiVersion: reconciler.oi/v1alpha1\n",
    "apiVersion: reconciler.io/v1alpa1\n",
    "apiversion: reconciler.io/v1alpha1\n",
    "",
])
def test_a_misspelt_declaration_never_destroys_its_stack(world: Callable[..., World],
                                                        typo: str) -> None:
    w = world({"web.yaml": _WEB.format(api="apiVersion: reconciler.io/v1alpha1\n"), **module()})
    w.settle()
    applied = w.status("stack/web")["lastRun"]["id"]
    w.push({"web.yaml": _WEB.format(api=typo)}, "A typo")
    w.settle()
    status = w.status("stack/web")
    assert status["phase"] == "Invalid"
    assert status["lastRun"]["id"] == applied
    assert resources(w)  # nothing destroyed


@pytest.mark.engine
def test_a_stack_still_named_anywhere_is_not_destroyed(world: Callable[..., World]) -> None:
    w = world({"web.yaml": stack(prune=True), **module()})
    w.settle()
    w.push({"web.yaml": None,
            "moved/web.yaml": "apiVersion: platform.example.io/v1\nkind: Stack\n"
                              "metadata:\n  name: web\n"}, "Moved to another group")
    w.settle()
    status = w.status("stack/web")
    assert status["phase"] == "Orphaned"
    assert "moved/web.yaml:1" in status["message"]
    assert resources(w)  # nothing destroyed
