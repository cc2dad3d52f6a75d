"""Whether any YAML document still names a Stack, whatever the state of its file.

Destroying a Stack's resources cannot be undone, so before a destroy the daemon asks
whether the Stack is truly gone: not declared any more, and not named by a document that
failed to load, was misspelled out of being a declaration (`kind: stack`, `apiversion:`),
or sits in a file that does not parse. Files are searched for the names' bytes first; only
those holding one are parsed, and a file that cannot be parsed is searched line by line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from reconciler.declarations.entries import Location
from reconciler.declarations.files import FileSource, normalize
from reconciler.declarations.ours import our_kind, slips
from reconciler.declarations.parse import every_document
from reconciler.declarations.scan import Scope


def still_named(files: FileSource, path: str, names: Iterable[str]) -> dict[str, Location]:
    """For each of `names` (Stack names about to be destroyed) named by a YAML document
    under the declarations folder `path` whose kind may be a Stack (`Stack` in any case, a
    near miss of it, or none at all), where it is named first (by path order). Names not in
    the result are named nowhere. A file that cannot be read counts as naming nothing."""
    wanted = sorted(set(names))
    folder = normalize(path)
    found: dict[str, Location] = {}
    if not wanted or folder is None:
        return found
    for file_path in sorted(Scope(folder).files(files)):
        try:
            data = files.read(file_path)
        except OSError:
            continue
        present = [n for n in wanted if n not in found and n.encode() in data]
        if present:
            for name, line in _naming(data, present).items():
                found[name] = Location(path=file_path, line=line)
    return found


def _naming(data: bytes, names: list[str]) -> dict[str, int]:
    """name → line, for `names` named in the file `data` (all present in its bytes)."""
    documents = every_document(data)
    if documents is None:
        return _named_lines(data, names)
    found: dict[str, int] = {}
    for line, document in documents:
        if not isinstance(document, dict) or not _may_be_stack(document.get("kind")):
            continue
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if isinstance(name, str) and name in names and name not in found:
            found[name] = line
    return found


def _may_be_stack(kind: Any) -> bool:
    if kind is None or not isinstance(kind, str):
        return True
    ours = our_kind(kind)
    if ours is not None:
        return ours == "Stack"
    return slips(kind.lower(), "stack", 1) <= 1


def _named_lines(data: bytes, names: list[str]) -> dict[str, int]:
    """For a file that does not parse: the first `name: NAME` of each name, anywhere."""
    found: dict[str, int] = {}
    for name in names:
        pattern = rb"\bname[\"']?\s*:\s*[\"']?" + re.escape(name.encode()) + rb"(?![-A-Za-z0-9_.])"
        match = re.search(pattern, data)
        if match is not None:
            found[name] = data.count(b"\n", 0, match.start()) + 1
    return found


def refusal(location: Location) -> str:
    """What a refused destroy says (status, logs): `not destroyed: still named at PATH:LINE`."""
    return f"not destroyed: still named at {location.path}:{location.line}"
