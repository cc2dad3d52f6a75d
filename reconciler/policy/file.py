"""Reading the policy file: every problem as `policy.yaml:line:col: field: message`.

The file is the operator's, read once at start; a wrong policy stops the daemon (exit 2)
rather than letting it run with guardrails nobody meant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from reconciler.declarations.positions import SourceMap, error_message, field_path
from reconciler.policy.model import Policy
from reconciler.types import API_VERSION

MAX_BYTES = 1 << 20
"""A policy is a few dozen lines; anything this big is not one."""


class PolicyError(ValueError):
    """A policy file that cannot be used; `lines` are its located problems."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load_policy(path: Path) -> Policy:
    """The policy in `path`, with the commit verification files resolved against the
    policy's folder. Raises PolicyError naming every problem."""
    shown = str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise PolicyError([f"{shown}:1:1: the file is larger than {MAX_BYTES} bytes"])
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PolicyError([f"{shown}:1:1: the file is not UTF-8 text"]) from None
    except OSError as err:
        reason = err.strerror or str(err)
        raise PolicyError([f"{shown}: cannot read the policy file: {reason}"]) from None
    data = _document(shown, text)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as err:
        raise PolicyError(_located(shown, text, err)) from None
    return _resolved(shown, text, policy, path.parent)


def _document(shown: str, text: str) -> dict[str, Any]:
    try:
        documents = [d for d in YAML(typ="safe").load_all(text) if d is not None]
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "1:1"
        raise PolicyError([f"{shown}:{where}: invalid YAML: {err.problem or err}"]) from None
    except (YAMLError, RecursionError, ValueError) as err:
        raise PolicyError([f"{shown}:1:1: invalid YAML: {err}"]) from None
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise PolicyError([
            f"{shown}:1:1: a policy file holds one mapping: apiVersion: {API_VERSION}, "
            "kind: Policy, spec: ..."
        ])
    document: dict[str, Any] = documents[0]
    return document


def _located(shown: str, text: str, err: ValidationError) -> list[str]:
    positions = SourceMap(text)
    lines = []
    for detail in err.errors(include_url=False):
        loc = tuple(detail["loc"])
        (line, column), path = positions.locate(
            0, loc, at_key=detail["type"] == "extra_forbidden",
            missing_last=detail["type"] == "missing",
        )
        field = field_path(path)
        prefix = f"{field}: " if field else ""
        lines.append(f"{shown}:{line}:{column}: {prefix}{error_message(detail, Policy)}")
    return lines


def _resolved(shown: str, text: str, policy: Policy, folder: Path) -> Policy:
    """Verification files relative to the policy's folder, and readable."""
    commits = policy.spec.commits
    update: dict[str, Path] = {}
    problems = []
    for name, alias in (("allowed_signers", "allowedSigners"), ("keyring", "keyring")):
        value: Path | None = getattr(commits, name)
        if value is None:
            continue
        resolved = value if value.is_absolute() else folder / value
        try:
            resolved.read_bytes()
        except OSError as err:
            (line, column), _ = SourceMap(text).locate(0, ("spec", "commits", alias))
            problems.append(f"{shown}:{line}:{column}: spec.commits.{alias}: cannot read "
                            f"{resolved}: {err.strerror or err}")
        update[name] = resolved
    if problems:
        raise PolicyError(problems)
    if not update:
        return policy
    spec = policy.spec.model_copy(update={"commits": commits.model_copy(update=update)})
    return policy.model_copy(update={"spec": spec})
