"""`reconciler render [--repo DIR] KIND/NAME`: the Kubernetes objects the kubernetes executor
would create for an entry, as YAML documents separated by `---` (like `kustomize build`): the
ConfigMap of a task's files first, then the Job. For review and debugging, e.g.
`reconciler render task/nightly | kubectl apply --dry-run=server -f -`.

What is rendered is the entry's first attempt of its usual operation (a task's run; a stack's
apply, or its plan with `apply: plan`), declared by the files in DIR as they are on disk, at
the commit HEAD points to when DIR is a Git work tree (a stack pod clones the `origin` remote
at that commit). The namespace is `--namespace`, else the Defaults namespace, else `default`.
Two things only the API server fills in are left out: the ConfigMap's `ownerReferences`
(the Job's uid) and the pods' own names.

With `--policy FILE`, an entry the policy denies is not rendered (it is invalid, with the
located reasons), as the daemon would not run it.

Exit status: 0 when printed; 1 when the entry does not exist, is invalid, is denied by the
policy, or cannot run on Kubernetes; 2 when DIR or the policy cannot be read or KIND/NAME is
not one.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.commands.policyflags import check_from_args
from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import DesiredState, Entry
from reconciler.declarations.loader import DeclarationLoader
from reconciler.executors.kubernetes.adapter import ADAPTER as KUBERNETES
from reconciler.executors.kubernetes.manifests import (
    KubernetesOptions,
    ManifestError,
    build_manifests,
)
from reconciler.policy.file import PolicyError
from reconciler.policy.rules import namespace_allowed
from reconciler.runs import RunRequest, run_id_for
from reconciler.types import EntryId, Kind, Operation, Revision, Trigger, entry_id, split_entry_id

UNKNOWN_REVISION = Revision("0" * 40)


def run(args: argparse.Namespace) -> int:
    try:
        kind, name = split_entry_id(args.entry)
    except ValueError as err:
        return _fail(str(err), 2)
    root = Path(args.repo)
    if not root.is_dir():
        return _fail(f"{root} is not a folder", 2)
    try:
        loader = DeclarationLoader(path=args.path)
    except ValueError as err:
        return _fail(f"--path {err}", 2)
    try:
        check = check_from_args(args, executor=KUBERNETES.name)
    except PolicyError as err:
        print("\n".join(err.lines), file=sys.stderr)
        return 2
    if check is not None and args.namespace and not namespace_allowed(
            check.policy, check.identity, args.namespace):
        return _fail(f"--namespace {args.namespace}: denied by policy: namespace "
                     f"{args.namespace} is not allowed", 1)
    files = DirectorySource(root)
    desired = loader.load(files)
    if check is not None:
        desired = check.apply(desired, files)
    wanted = entry_id(kind, name)
    entry = _entry(desired, wanted)
    if entry is None:
        return 1
    revision, source_url, committed_at = _repository(root)
    request = RunRequest(
        run_id=run_id_for(entry, _operation(entry), 1),
        entry=entry,
        operation=_operation(entry),
        trigger=Trigger.MANUAL,
        attempt=1,
        revision=revision,
        requested_at=committed_at or datetime.now(UTC).replace(microsecond=0),
    )
    options = KubernetesOptions(namespace="default", source_url=source_url)
    try:
        manifests = build_manifests(request, options, namespace=args.namespace)
    except ManifestError as err:
        return _fail(str(err), 1)
    dump(manifests.documents(), sys.stdout)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"reconciler render: {message}", file=sys.stderr)
    return code


def _entry(desired: DesiredState, wanted: EntryId) -> Entry | None:
    if wanted in desired.entries:
        return desired.entries[wanted]
    if wanted in desired.invalid:
        print(f"reconciler render: {wanted} is invalid:", file=sys.stderr)
        for error in desired.invalid[wanted]:
            print(f"  {error}", file=sys.stderr)
        return None
    known = sorted(desired.entries)
    hint = f"; entries: {', '.join(known)}" if known else "; there are no entries"
    print(f"reconciler render: {wanted}: no such entry{hint}", file=sys.stderr)
    return None


def _operation(entry: Entry) -> Operation:
    if entry.kind is Kind.TASK:
        return Operation.RUN
    return Operation.PLAN if entry.stack.apply == "plan" else Operation.APPLY


def _repository(root: Path) -> tuple[Revision, str, datetime | None]:
    """HEAD, the `origin` URL and HEAD's commit time; placeholders outside a Git work tree."""
    from reconciler.source.tree import open_repository, resolve_revision

    fallback = root.resolve().as_uri()
    try:
        repo = open_repository(root)
        revision = resolve_revision(repo, "HEAD")
    except (FileNotFoundError, LookupError):
        print(f"reconciler render: {root} has no commit: the revision is shown as "
              f"{UNKNOWN_REVISION}", file=sys.stderr)
        return UNKNOWN_REVISION, fallback, None
    commit: Any = repo[revision]
    committed = datetime.fromtimestamp(commit.commit_time, UTC)
    try:
        url = str(repo.remotes["origin"].url)
    except (KeyError, ValueError):
        url = fallback
    return revision, url, committed


def dump(documents: list[dict[str, Any]], out: Any) -> None:
    """YAML as `kubectl` users read it: keys in the order written, multi-line strings (the
    clone script, a task's files) as literal blocks."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096
    yaml.representer.ignore_aliases = lambda *_: True

    def text(representer: Any, value: str) -> Any:
        block = "\n" in value and not any(line != line.rstrip() for line in value.splitlines())
        return representer.represent_scalar("tag:yaml.org,2002:str", value,
                                            style="|" if block else None)

    yaml.representer.add_representer(str, text)
    yaml.dump_all(documents, out)
