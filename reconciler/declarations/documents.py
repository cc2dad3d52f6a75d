"""One file's declarations: its documents validated against the models, each problem located.

This is the per-file half of loading: its result depends only on the file's content, so the
loader caches it by Git blob id. Checks that need other files live in `checks`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reconciler.declarations.bases import EntryDocument
from reconciler.declarations.entries import LoadError, Location
from reconciler.declarations.fields import check_name
from reconciler.declarations.limits import MAX_ERRORS_PER_FILE
from reconciler.declarations.models import DOCUMENT_MODELS, DefaultsDocument
from reconciler.declarations.ours import our_kind, version_key
from reconciler.declarations.parse import RawDocument, RawFile
from reconciler.declarations.positions import (
    Segment,
    SourceMap,
    describe,
    error_message,
    field_path,
)
from reconciler.declarations.sharing import share_field_sets
from reconciler.types import API_VERSION, EntryId, Kind, entry_id

Model = EntryDocument | DefaultsDocument
_KINDS = ", ".join(DOCUMENT_MODELS)


@dataclass(frozen=True, slots=True)
class Document:
    """One document with our apiVersion: its model when valid, its errors when not."""

    index: int
    line: int
    kind: Kind | None
    """None when the kind is missing or unknown."""
    name: str | None
    """metadata.name when it is present and valid, else None."""
    model: Model | None
    errors: tuple[LoadError, ...]
    id: EntryId | None = None
    """`task/NAME` or `stack/NAME` when kind and name are known."""
    omitted: int = 0
    """Errors of this document not kept (see MAX_ERRORS_PER_FILE)."""

    @property
    def identified(self) -> bool:
        """Whether it is known what this document declares (a Defaults needs no name)."""
        return self.kind is Kind.DEFAULTS or self.id is not None


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    oid: str
    documents: tuple[Document, ...]
    errors: tuple[LoadError, ...]
    """Problems of the file as a whole (it could not be read as YAML)."""
    may_hold_defaults: bool = False
    """The file could not be read and has a `kind: Defaults` line."""

    @property
    def declares(self) -> bool:
        """Whether this is a declaration file (or a broken file that may be one)."""
        return bool(self.documents or self.errors)

    @property
    def unreadable(self) -> bool:
        """True when entries declared here could be missing from the result: the file did not
        parse, or a document's kind or name could not be read."""
        return bool(self.errors) or not all(d.identified for d in self.documents)


class _Locator:
    """Positions in one file, parsing its text again only when a problem needs one."""

    def __init__(self, path: str, read_text: Callable[[], str]) -> None:
        self.path = path
        self._read_text = read_text
        self._map: SourceMap | None = None
        self.budget = MAX_ERRORS_PER_FILE
        """Validation errors still to be located in this file; the others are counted."""

    def error(
        self,
        doc: RawDocument,
        loc: Sequence[Segment],
        message: str,
        *,
        entry: EntryId | None = None,
        at_key: bool = False,
        missing: bool = False,
    ) -> LoadError:
        if self._map is None:
            self._map = SourceMap(self._read_text())
        (line, column), path = self._map.locate(
            doc.index, loc, at_key=at_key, missing_last=missing, document_line=doc.line
        )
        return LoadError(
            location=Location(path=self.path, line=line, column=column),
            field=field_path(path) or None,
            message=message,
            entry=entry,
        )


def analyse(path: str, oid: str, raw: RawFile, read_text: Callable[[], str]) -> FileResult:
    """Validate the documents of one parsed file. `read_text` gives the file's text, needed
    only to locate problems."""
    if raw.problem is not None:
        location = Location(path=path, line=raw.problem.line, column=raw.problem.column)
        error = LoadError(location=location, message=raw.problem.message)
        return FileResult(path, oid, (), (error,), may_hold_defaults=raw.mentions_defaults)
    locator = _Locator(path, read_text)
    documents = tuple(_document(doc, locator) for doc in raw.documents)
    return FileResult(path, oid, documents, ())


def _document(doc: RawDocument, locator: _Locator) -> Document:
    data = doc.data
    kind = _kind(data.get("kind"))
    name = _name(data.get("metadata"))
    ident = _identity(kind, name)
    key = version_key(data)
    if key != "apiVersion" or data[key] != API_VERSION:
        # Still identified when it can be: a typo in the apiVersion makes the entry
        # invalid, it does not remove it.
        near = _near_kind(data.get("kind"))
        ident = _identity(near, name)
        error = _version_error(doc, key, locator)
        return Document(doc.index, doc.line, near, name, None, (error,), ident)
    if kind is None:
        # `kind: stack` is still known to mean a Stack: its entry is invalid, not unknown;
        # `kind: defaults` makes the Defaults unknown, so nothing runs without them.
        error = _kind_error(doc, locator)
        near = _near_kind(data.get("kind"))
        ident = _identity(near, name)
        return Document(doc.index, doc.line, near, name, None, (error,), ident)
    try:
        model: Model = DOCUMENT_MODELS[kind.value].model_validate(data)
    except ValidationError as err:
        errors, omitted = _validation_errors(doc, err, kind, locator, ident)
        return Document(doc.index, doc.line, kind, name, None, errors, ident, omitted)
    share_field_sets(model)
    return Document(doc.index, doc.line, kind, name, model, (), ident)


def _identity(kind: Kind | None, name: str | None) -> EntryId | None:
    """The entry a document declares, when its kind is one of entries and it has a name."""
    return entry_id(kind, name) if kind is not None and kind.entries and name else None


def _version_error(doc: RawDocument, key: Any, locator: _Locator) -> LoadError:
    if key is None:
        message = f"is required: {API_VERSION}"
        return locator.error(doc, ("apiVersion",), message, missing=True)
    if key != "apiVersion":
        message = f"unknown field; did you mean 'apiVersion'? (this reconciler reads {API_VERSION})"
        return locator.error(doc, (key,), message, at_key=True)
    version = doc.data[key]
    message = f"unsupported apiVersion {describe(version)}; this reconciler reads {API_VERSION}"
    return locator.error(doc, ("apiVersion",), message)


def _near_kind(value: Any) -> Kind | None:
    spelled = our_kind(value)
    return Kind(spelled) if spelled is not None else None


def _kind(value: Any) -> Kind | None:
    return Kind(value) if isinstance(value, str) and value in DOCUMENT_MODELS else None


def _name(metadata: Any) -> str | None:
    if not isinstance(metadata, dict):
        return None
    name = metadata.get("name")
    if not isinstance(name, str):
        return None
    try:
        return check_name(name)
    except ValueError:
        return None


def _kind_error(doc: RawDocument, locator: _Locator) -> LoadError:
    value = doc.data.get("kind")
    if value is None:
        return locator.error(doc, ("kind",), f"is required: one of {_KINDS}", missing=True)
    message = f"unknown kind {value!r}; expected one of {_KINDS}"
    hint = difflib.get_close_matches(str(value), list(DOCUMENT_MODELS), n=1, cutoff=0.6)
    if hint:
        message += f" (did you mean {hint[0]!r}?)"
    return locator.error(doc, ("kind",), message)


def _validation_errors(
    doc: RawDocument,
    err: ValidationError,
    kind: Kind,
    locator: _Locator,
    ident: EntryId | None,
) -> tuple[tuple[LoadError, ...], int]:
    """The located errors of one document, and how many more were not located: past the
    file's budget, only a document's first error is (so it is known to be invalid)."""
    model = DOCUMENT_MODELS[kind.value]
    found: list[LoadError] = []
    details = err.errors(include_url=False)
    for detail in details:
        if found and locator.budget <= 0:
            break
        loc = tuple(detail["loc"])
        locator.budget -= 1
        found.append(
            locator.error(
                doc,
                loc,
                error_message(detail, model),
                entry=ident,
                at_key=detail["type"] == "extra_forbidden" or (bool(loc) and loc[-1] == "[key]"),
                missing=detail["type"] == "missing",
            )
        )
    return tuple(found), len(details) - len(found)
