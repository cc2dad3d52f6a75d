"""Checks across files: duplicate identities, Defaults, `dependsOn` targets, cycles.

They only touch models, never YAML, and each looks at the part of the repository it needs
(the declarations of one identity, one entry's targets, the part of the dependency graph a
change reaches), so that a load checks again only what changed (see `assemble`). Each
returns `Pending` problems: what is wrong and where in which document, located (line and
column) by the loader afterwards.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.declarations.documents import Document, FileResult
from reconciler.declarations.limits import MAX_CYCLE_SHOWN
from reconciler.declarations.positions import Segment
from reconciler.types import EntryId, Kind


@dataclass(frozen=True, slots=True)
class Pending:
    """A problem found across files, not yet located."""

    file: FileResult
    document: Document
    loc: tuple[Segment, ...]
    message: str
    at_key: bool = False

    @property
    def entry(self) -> EntryId | None:
        return self.document.id


Declared = tuple[FileResult, Document]


def where(file: FileResult, document: Document) -> str:
    return f"{file.path}:{document.line}"


def duplicates(declared: Iterable[Declared]) -> list[Pending]:
    """Every declaration of a `kind/name` declared more than once, naming the other places.
    All of them are wrong: which one was meant is for a person to say."""
    by_id: dict[EntryId, list[Declared]] = defaultdict(list)
    for file, doc in declared:
        if doc.id is not None:
            by_id[doc.id].append((file, doc))
    found: list[Pending] = []
    for ident, places in by_id.items():
        if len(places) < 2:
            continue
        for file, doc in places:
            message = f"{ident} is declared more than once; also at {_others(places, doc)}"
            found.append(Pending(file, doc, ("metadata", "name"), message))
    return found


_OTHERS_SHOWN = 5


def _others(places: Sequence[Declared], doc: Document) -> str:
    """Where the other declarations are, the first few of them: a generated file that
    repeats one name a thousand times gets a thousand short lines, not a million places."""
    shown: list[str] = []
    for f, d in places:
        if d is not doc:
            shown.append(where(f, d))
            if len(shown) == _OTHERS_SHOWN:
                break
    more = len(places) - 1 - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def extra_defaults(declared: Sequence[Declared]) -> list[Pending]:
    """Every Defaults document when there is more than one."""
    if len(declared) < 2:
        return []
    found: list[Pending] = []
    for file, doc in declared:
        message = f"a repository has at most one Defaults; another is at {_others(declared, doc)}"
        found.append(Pending(file, doc, ("kind",), message))
    return found


def missing_targets(
    declared: Declared, targets: Sequence[str], known: Container[str], unreadable: Sequence[str]
) -> list[Pending]:
    """`dependsOn` items of one declaration naming an entry declared nowhere."""
    file, doc = declared
    hint = f" (or in a file that failed to load: {', '.join(unreadable)})" if unreadable else ""
    return [
        Pending(file, doc, ("spec", "dependsOn", i), f"{target} is not declared anywhere{hint}")
        for i, target in enumerate(targets)
        if target not in known
    ]


@dataclass(frozen=True, slots=True)
class Loop:
    """A dependency cycle through one entry, as reported on it."""

    members: frozenset[EntryId]
    """Its strongly connected component: every entry in a cycle with it."""
    index: int
    """The `dependsOn` item that leads into the cycle."""
    message: str


def reachable(graph: Mapping[EntryId, Sequence[str]], start: Iterable[EntryId]) -> set[EntryId]:
    """Every node of `graph` that `start` leads to through `dependsOn`, `start` included."""
    seen = {node for node in start if node in graph}
    stack = list(seen)
    while stack:
        for target in graph[stack.pop()]:
            ident = EntryId(target)
            if ident in graph and ident not in seen:
                seen.add(ident)
                stack.append(ident)
    return seen


def cycles(
    graph: Mapping[EntryId, Sequence[str]],
    nodes: Collection[EntryId],
    where: Callable[[EntryId], str] = str,
) -> dict[EntryId, Loop]:
    """The loop of every node of `nodes` that is part of a dependency cycle. `nodes` must
    hold everything its nodes lead to (see `reachable`): then the strongly connected
    components found are those of the whole graph.

    In a small component every member is shown the shortest cycle through it. A large one
    (a generated repository gone wrong) is reported once, at its first member, naming a
    cycle through it shortened to MAX_CYCLE_SHOWN entries; every other member is told
    where (`where` says how a member is placed): linear in the component, and a report a
    person can read."""
    sub = {n: [EntryId(t) for t in graph[n] if t in graph] for n in nodes}
    found: dict[EntryId, Loop] = {}
    if _acyclic(sub):
        return found
    for component in _strongly_connected(sub):
        members = frozenset(component)
        if len(component) == 1 and component[0] not in sub[component[0]]:
            continue
        first = min(members)
        for ident in sorted(members) if len(members) <= MAX_CYCLE_SHOWN else [first]:
            loop = _cycle_through(sub, ident, members)
            following = loop[1] if len(loop) > 1 else ident
            message = "dependency cycle: " + _chain([*loop, ident])
            found[ident] = Loop(members, list(graph[ident]).index(following), message)
        if len(members) > MAX_CYCLE_SHOWN:
            told = (
                f"part of a dependency cycle of {len(members)} entries, reported at "
                f"{where(first)}"
            )
            for ident in members - {first}:
                index = next(i for i, t in enumerate(graph[ident]) if t in members)
                found[ident] = Loop(members, index, told)
    return found


def _chain(loop: list[EntryId]) -> str:
    """`a → b → a`, with the middle left out of a long one."""
    if len(loop) <= MAX_CYCLE_SHOWN + 1:
        return " → ".join(loop)
    head = loop[: MAX_CYCLE_SHOWN - 2]
    left_out = len(loop) - len(head) - 2
    return " → ".join([*head, f"… ({left_out} more)", *loop[-2:]])


def _cycle_through(
    graph: Mapping[EntryId, list[EntryId]], start: EntryId, members: frozenset[EntryId]
) -> list[EntryId]:
    """The shortest loop from `start` back to itself inside its component (breadth first,
    so what is shown is a real chain of `dependsOn`, not just the component)."""
    previous: dict[EntryId, EntryId] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                loop = [node]
                while loop[-1] != start:
                    loop.append(previous[loop[-1]])
                return loop[::-1]
            if target in members and target not in previous:
                previous[target] = node
                queue.append(target)
    return [start]


def _acyclic(graph: Mapping[EntryId, list[EntryId]]) -> bool:
    """Kahn's algorithm: cheap enough to run on every load; the full analysis that names
    the cycles runs only when there is one."""
    waiting = dict.fromkeys(graph, 0)
    dependents: dict[EntryId, list[EntryId]] = defaultdict(list)
    for node, targets in graph.items():
        for target in targets:
            if target in waiting:
                waiting[node] += 1
                dependents[target].append(node)
    ready = [node for node, count in waiting.items() if count == 0]
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        for dependent in dependents.get(node, ()):
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    return done == len(waiting)


def _strongly_connected(graph: Mapping[EntryId, list[EntryId]]) -> list[list[EntryId]]:
    """Tarjan's algorithm, iterative (a long dependency chain must not hit the recursion
    limit). Edges to nodes outside the graph are ignored."""
    index: dict[EntryId, int] = {}
    low: dict[EntryId, int] = {}
    on_stack: set[EntryId] = set()
    stack: list[EntryId] = []
    result: list[list[EntryId]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = graph[node]
            if position < len(targets):
                work.append((node, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component: list[EntryId] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


def kinds_of(declared: Iterable[Declared], kind: Kind) -> list[Declared]:
    return [(f, d) for f, d in declared if d.kind is kind]
