"""`reconciler diff --repo DIR --base REV --head REV`: what merging HEAD would change.

Both commits are read from the repository's object database (no checkout). Entries are
added, changed (field by field, on the effective specs with Defaults applied), removed, or
invalid (with their problems). `--format markdown` is meant to be posted as a pull-request
comment; `--format json` prints a `DeclarationDiff` report (schemas/declaration-diff.json,
camelCase keys):

    {"apiVersion": "reconciler.io/v1alpha1", "kind": "DeclarationDiff", "base": SHA, "head": SHA,
     "summary": {"added": n, "changed": n, "removed": n, "invalid": n},
     "added" | "changed" | "removed" | "invalid": [
        {"id", "kind", "name", "change", "location": {"path", "line", "column"} | null,
         "baseHash", "headHash", "rerun", "fields": [{"path", "base", "head"}],
         "changedFiles": [path], "prune", "errors": [ERROR], "note"}],
     "dependents": [{"id", "kind", "name", "location", "after": [id]}],
     "errors": [ERROR]}

Exit 0, or 1 when the head commit has problems, 2 when the repository or a revision
cannot be read. Secret values never appear: declarations only name secrets.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from typing import Any

from reconciler.declarations.changes import DeclarationDiff, EntryChange, FieldChange, compare
from reconciler.declarations.entries import LoadError
from reconciler.declarations.loader import DeclarationLoader
from reconciler.declarations.reports import DiffReport
from reconciler.source.tree import (
    GitTreeSource,
    changed_paths,
    open_repository,
    resolve_revision,
)

_MAX_SHOWN = 80
_SOURCES = 'sources["'
_SIGNS = {"added": "+", "changed": "~", "removed": "-", "invalid": "!"}
_BADGES = {"added": "🆕 added", "changed": "✏️ changed", "removed": "🗑️ removed",
           "invalid": "❌ invalid"}


def run(args: argparse.Namespace) -> int:
    try:
        repo = open_repository(args.repo)
        base = resolve_revision(repo, args.base)
        head = resolve_revision(repo, args.head)
        loader = DeclarationLoader(path=args.path)
    except (FileNotFoundError, LookupError, ValueError) as err:
        print(f"reconciler diff: {err}", file=sys.stderr)
        return 2
    before = loader.load(GitTreeSource(repo, base), revision=base)
    after = loader.load(GitTreeSource(repo, head), revision=head)
    diff = compare(before, after, changed_files=changed_paths(repo, base, head))
    renderers = {"text": render_text, "markdown": render_markdown, "json": render_json}
    sys.stdout.write(renderers[args.format](diff))
    return 0 if after.clean else 1


def _summary(diff: DeclarationDiff) -> str:
    return ", ".join(f"{n} {what}" for what, n in diff.counts().items())


def _loose_errors(diff: DeclarationDiff) -> list[LoadError]:
    """Problems not shown under an invalid entry (a file that does not parse, Defaults)."""
    shown = {e for c in diff.invalid for e in c.errors}
    return [e for e in diff.errors if e not in shown]


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str) and "\n" in value.rstrip("\n"):
        return f"({len(value.splitlines())} lines)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _shown(change: FieldChange) -> tuple[str, str, str]:
    """(what, base, head) as displayed. Repository paths an entry uses (`sources`) show
    their Git ids shortened: what matters is that the content changed."""
    if change.path.startswith(_SOURCES):
        path = json.loads(change.path[len(_SOURCES) - 1 : -1])
        short = [str(v)[:12] if v is not None else "(not used)" for v in (change.base, change.head)]
        return f"repository content at {path}", short[0], short[1]
    return change.path, _value(change.base), _value(change.head)


def _field_line(change: FieldChange) -> str:
    what, base, head = _shown(change)
    return f"{what}: {base} → {head}"


_MAX_INVALID_SHOWN = 50
"""Invalid entries listed in text and Markdown; a generated repository gone wrong can have
thousands, and a pull-request comment holds 64 KB."""


def _entries(diff: DeclarationDiff) -> list[EntryChange]:
    return [*diff.added, *diff.changed, *diff.removed, *diff.invalid[:_MAX_INVALID_SHOWN]]


def _unlisted(diff: DeclarationDiff) -> str | None:
    more = len(diff.invalid) - _MAX_INVALID_SHOWN
    if more <= 0:
        return None
    return f"… and {more} more invalid entries (`reconciler validate` lists every problem)"


def render_text(diff: DeclarationDiff) -> str:
    span = f"{(diff.base or '?')[:12]}..{(diff.head or '?')[:12]}"
    if diff.empty:
        return f"{span}: no changes to declarations\n"
    lines = [f"{span}: {_summary(diff)}"]
    for change in _entries(diff):
        where = f"  {change.location.path}:{change.location.line}" if change.location else ""
        lines.append(f"{_SIGNS[change.change]} {change.id}{where}")
        if change.change == "changed" and not change.rerun:
            lines.append("    (labels only: nothing runs again)")
        lines.extend(f"    {_field_line(f)}" for f in change.fields)
        lines.extend(f"    changed file: {path}" for path in change.changed_files)
        lines.extend(f"    {e}" for e in change.errors)
        if change.note:
            lines.append(f"    {change.note}")
    unlisted = _unlisted(diff)
    if unlisted:
        lines.append(unlisted)
    loose = _loose_errors(diff)
    if loose:
        lines.append("problems:")
        lines.extend(f"    {e}" for e in loose)
    return "\n".join(lines) + "\n"


def render_json(diff: DeclarationDiff) -> str:
    data = DiffReport.of(diff).model_dump(mode="json")
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _code(text: str) -> str:
    """Inline code in a Markdown table cell: backticks and pipes cannot break out."""
    text = text.replace("\n", " ").replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fenced(body: str, info: str = "") -> list[str]:
    fence = "```"
    while fence in body:
        fence += "`"
    return [f"{fence}{info}", body.rstrip("\n"), fence]


def _details_line(change: EntryChange) -> str:
    if change.change == "added":
        return f"new: runs once merged ({change.note})" if change.note else "new: runs once merged"
    if change.change == "changed":
        what = f"{len(change.fields)} field{'s' if len(change.fields) != 1 else ''} changed"
        return what + ("; runs again" if change.rerun else "; labels only, no new run")
    if change.change == "removed":
        return ("⚠️ " + change.note) if change.prune else (change.note or "no longer declared")
    count = len(change.errors)
    problems = f"{count} problem{'s' if count != 1 else ''}"
    return f"{problems}; {change.note}" if change.note else problems


def render_markdown(diff: DeclarationDiff) -> str:
    base, head = (diff.base or "?")[:12], (diff.head or "?")[:12]
    if diff.empty:
        return f"### reconciler: no changes to declarations\n\nBase `{base}`, head `{head}`.\n"
    entries, loose = _entries(diff), _loose_errors(diff)
    out = [f"### reconciler: {_markdown_headline(diff, loose)}", "",
           f"Base `{base}` → head `{head}`."]
    if entries:
        # A table only when it has rows: "0 invalid" above an empty table hid a syntax error.
        out += ["", "| Entry | Change | Details |", "|---|---|---|"]
        for change in entries:
            details = _details_line(change).replace("|", "\\|")
            out.append(f"| {_code(change.id)} | {_BADGES[change.change]} | {details} |")
    unlisted = _unlisted(diff)
    if unlisted:
        out += ["", unlisted]
    out += _markdown_dependents(diff)
    for change in entries:
        out += _markdown_details(change)
    if loose:
        shown = [str(e) for e in loose[:_MAX_INVALID_SHOWN]]
        if len(loose) > len(shown):
            shown.append(f"… and {len(loose) - len(shown)} more (`reconciler validate` lists "
                         "every problem)")
        where = " outside the entries above" if entries else ""
        out += ["", f"**{_plural(len(loose), 'problem')} in the head commit**{where}:", ""]
        out += _fenced("\n".join(shown))
    return "\n".join(out) + "\n"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _markdown_headline(diff: DeclarationDiff, loose: list[LoadError]) -> str:
    if not _entries(diff):
        return f"❌ {_plural(len(loose), 'problem')} in the head commit"
    headline = _summary(diff)
    if diff.dependents:
        runs = "runs" if len(diff.dependents) == 1 else "run"
        headline += f"; {_plural(len(diff.dependents), 'dependent')} {runs} again"
    if loose:
        headline += f"; {_plural(len(loose), 'more problem')}"
    return headline


def _markdown_dependents(diff: DeclarationDiff) -> list[str]:
    """The unchanged entries merging runs again: after what they depend on runs."""
    if not diff.dependents:
        return []
    out = ["", "Unchanged entries that run again after their dependencies (`dependsOn`):", "",
           "| Entry | After |", "|---|---|"]
    for dependent in diff.dependents[:_MAX_INVALID_SHOWN]:
        after = ", ".join(_code(a) for a in dependent.after)
        out.append(f"| {_code(dependent.id)} | {after} |")
    more = len(diff.dependents) - _MAX_INVALID_SHOWN
    if more > 0:
        out += ["", f"… and {more} more dependents (`--format json` lists them all)"]
    return out


def _markdown_details(change: EntryChange) -> list[str]:
    if not (change.fields or change.changed_files or change.errors):
        return []
    summary = f"<code>{change.id}</code>: {_details_line(change)}".replace("⚠️ ", "")
    out = ["", f"<details><summary>{summary}</summary>", ""]
    plain = [f for f in change.fields if not _multiline(f)]
    if plain:
        out += ["| Field | Base | Head |", "|---|---|---|"]
        for f in plain:
            what, base, head = _shown(f)
            out.append(f"| {_code(what)} | {_code(base)} | {_code(head)} |")
        out.append("")
    for f in change.fields:
        if _multiline(f):
            out += [*_fenced(_unified(f), "diff"), ""]
    if change.changed_files:
        out += ["Changed files:", ""] + [f"- {_code(p)}" for p in change.changed_files] + [""]
    if change.errors:
        out += [*_fenced("\n".join(str(e) for e in change.errors)), ""]
    out.append("</details>")
    return out


def _multiline(change: FieldChange) -> bool:
    return any(isinstance(v, str) and "\n" in v.rstrip("\n") for v in (change.base, change.head))


def _unified(change: FieldChange) -> str:
    before = change.base.splitlines() if isinstance(change.base, str) else []
    after = change.head.splitlines() if isinstance(change.head, str) else []
    lines = difflib.unified_diff(
        before, after, f"{change.path} (base)", f"{change.path} (head)", lineterm=""
    )
    return "\n".join(lines)
