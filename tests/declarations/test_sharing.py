"""Equal value models inside loaded entries are one object; unequal ones, or ones that differ
only in which fields were written, are not."""

from __future__ import annotations

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.types import EntryId
from tests.declarations.repo import Repo, task

CMD = "  command: [python3, -c, 'print(1)']\n"


def resources(requests: str, limits: str = "{cpu: '1'}") -> str:
    return f"{CMD}  resources:\n    requests: {requests}\n    limits: {limits}\n"


def test_equal_resources_are_shared(repo: Repo) -> None:
    repo.write({
        "a.yaml": task("a", resources("{cpu: 100m, memory: 128Mi}")),
        "b.yaml": task("b", resources("{memory: 128Mi, cpu: 100m}")),
        "c.yaml": task("c", resources("{cpu: 200m, memory: 128Mi}")),
        "d.yaml": task("d", resources("{cpu: 100m, memory: 128Mi, ephemeralStorage: null}")),
    })
    desired = DeclarationLoader().load(DirectorySource(repo.root))
    assert not desired.errors
    spec = {name: desired.entries[EntryId(f"task/{name}")].spec for name in "abcd"}
    assert spec["a"].resources is spec["b"].resources  # type: ignore[union-attr]
    assert spec["a"].resources.requests is spec["b"].resources.requests  # type: ignore[union-attr]
    assert spec["a"].resources is not spec["c"].resources  # type: ignore[union-attr]
    assert spec["c"].resources.limits is spec["a"].resources.limits  # type: ignore[union-attr]
    # Equal, with a field written that the other leaves out: not shared (dumps differ).
    assert spec["d"].resources.requests == spec["a"].resources.requests  # type: ignore[union-attr]
    assert spec["d"].resources.requests is not spec["a"].resources.requests  # type: ignore[union-attr]
    for name in "abcd":
        fresh = DeclarationLoader().load(DirectorySource(repo.root))
        assert fresh.entries[EntryId(f"task/{name}")] == desired.entries[EntryId(f"task/{name}")]
