"""Pure evaluation of one entry against the policy: what it asks for that it may not have.

`evaluate` looks at the effective spec (Defaults merged under the entry), since that is what
would run: a namespace, image or service account that comes from Defaults counts as much as
one the entry writes itself. Each `Denial` names the field as written in YAML and whether the
value can come from the entry's document, from the Defaults document, or from either (the
same value in both), so the loader hook can point at the line that asked for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.declarations.bases import EntrySpec
from reconciler.declarations.entries import Entry
from reconciler.declarations.fields import parse_duration
from reconciler.declarations.models import DefaultsSpec, Repository
from reconciler.declarations.positions import Segment, field_path
from reconciler.policy.match import (
    ImageName,
    RepositoryURL,
    any_glob,
    image_allowed,
    parse_image_prefix,
    parse_repository,
    quantity,
    repository_allowed,
)
from reconciler.policy.model import Policy

Origin = Literal["entry", "defaults", "either"]


class DaemonIdentity(BaseModel):
    """What of the daemon's own no declaration may be given, whatever the policy says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(default="default", description="The daemon's --namespace.")
    kubernetes: bool = Field(
        default=True,
        description="Runs are Kubernetes pods. With the local executor they are processes of "
        "this machine: namespaces mean nothing and resources are not enforced, so neither "
        "the namespace rule nor the requirement to set a limit applies.",
    )
    service_accounts: frozenset[str] = Field(
        default=frozenset({"reconciler"}),
        description="Globs of the daemon's own account and other privileged ones (the "
        "accounts of stacks, which reach their state).",
    )
    secrets: frozenset[str] = Field(
        default=frozenset(),
        description="Globs of Secrets holding the daemon's credentials (Git, webhook) and the "
        "stacks' state.",
    )


@dataclass(frozen=True, slots=True)
class Denial:
    loc: tuple[Segment, ...]
    """The field, as segments of the document it is in (`spec`, `secretEnv`, `TOKEN`, ...)."""
    reason: str
    origin: Origin = "entry"

    @property
    def field(self) -> str:
        return field_path(self.loc)

    @property
    def message(self) -> str:
        return f"denied by policy: {self.reason}"


def evaluate(entry: Entry, policy: Policy, identity: DaemonIdentity) -> list[Denial]:
    """Everything `entry` asks for that `policy` (and the daemon's identity) refuses."""
    spec = policy.spec
    found: list[Denial] = []
    if identity.kubernetes:
        found.extend(_namespace(entry.defaults, spec.namespaces, identity))
    found.extend(_service_account(entry, spec.service_accounts, identity))
    found.extend(_secrets(entry, spec.secrets, identity))
    if spec.images is not None:
        found.extend(_images(entry, _image_prefixes(tuple(spec.images))))
    found.extend(_kind_rules(entry.spec, policy))
    found.extend(_limits(entry, policy, require=identity.kubernetes))
    return found


def namespace_allowed(policy: Policy, identity: DaemonIdentity, namespace: str) -> bool:
    allowed = policy.spec.namespaces
    return any_glob([identity.namespace] if allowed is None else allowed, namespace)


def _listing(patterns: Sequence[str]) -> str:
    return f"allowed: {', '.join(patterns)}" if patterns else "the policy allows none"


def _namespace(
    defaults: DefaultsSpec, allowed: Sequence[str] | None, identity: DaemonIdentity
) -> Iterator[Denial]:
    patterns = [identity.namespace] if allowed is None else list(allowed)
    namespace = defaults.namespace or identity.namespace
    if any_glob(patterns, namespace):
        return
    if defaults.namespace:
        reason = f"namespace {namespace} is not allowed ({_listing(patterns)})"
        yield Denial(("spec", "namespace"), reason, "defaults")
    else:
        reason = (f"runs go to the daemon's namespace {namespace}, which the policy does not "
                  f"allow ({_listing(patterns)})")
        yield Denial(("kind",), reason)


def _origin(value: object, from_defaults: object) -> Origin:
    return "either" if value == from_defaults else "entry"


def _service_account(
    entry: Entry, allowed: Sequence[str], identity: DaemonIdentity
) -> Iterator[Denial]:
    account = entry.spec.service_account_name
    if not account:
        return
    loc = ("spec", "serviceAccountName")
    origin = _origin(account, entry.defaults.service_account_name)
    if any_glob(sorted(identity.service_accounts), account):
        yield Denial(loc, f"service account {account} is reserved for the daemon", origin)
    elif not any_glob(allowed, account):
        yield Denial(loc, f"service account {account} is not allowed ({_listing(allowed)})",
                     origin)


def _secrets(
    entry: Entry, allowed: Sequence[str] | None, identity: DaemonIdentity
) -> Iterator[Denial]:
    asked: list[tuple[tuple[Segment, ...], str, Origin]] = [
        (("spec", "secretEnv", name, "secret"), ref.secret, "entry")
        for name, ref in entry.spec.secret_env.items()
    ]
    # Outside `secretEnv`, only the credentials of a repository cloned for the run name one.
    repository = entry.spec.repository_to_clone()
    if repository is not None and repository.credentials_secret:
        asked.append((("spec", "repository", "credentialsSecret"),
                      repository.credentials_secret, "entry"))
    for i, secret in enumerate(entry.defaults.image_pull_secrets):
        asked.append((("spec", "imagePullSecrets", i), secret, "defaults"))
    for loc, secret, origin in asked:
        if any_glob(identity.secrets, secret):
            yield Denial(loc, f"secret {secret} holds the daemon's own credentials or state",
                         origin)
        elif allowed is not None and not any_glob(allowed, secret):
            yield Denial(loc, f"secret {secret} is not allowed ({_listing(allowed)})", origin)


@lru_cache(maxsize=64)
def _image_prefixes(prefixes: tuple[str, ...]) -> tuple[ImageName, ...]:
    return tuple(p for p in map(parse_image_prefix, prefixes) if p is not None)


@lru_cache(maxsize=64)
def _repository_prefixes(prefixes: tuple[str, ...]) -> tuple[RepositoryURL, ...]:
    return tuple(p for p in map(parse_repository, prefixes) if p is not None)


@lru_cache(maxsize=8192)
def _image_ok(image: str, prefixes: tuple[ImageName, ...]) -> bool:
    # Most entries of a repository share a few images and clone URLs: check each once.
    return image_allowed(image, prefixes)


@lru_cache(maxsize=8192)
def _repository_ok(url: str, prefixes: tuple[RepositoryURL, ...]) -> bool:
    return repository_allowed(url, prefixes)


@lru_cache(maxsize=64)
def _seconds(duration: str) -> int:
    return int(parse_duration(duration).total_seconds())


def _images(entry: Entry, prefixes: tuple[ImageName, ...]) -> Iterator[Denial]:
    shown = ", ".join(_shown_prefixes(prefixes))
    image = entry.spec.image_to_run()
    if image and not _image_ok(image, prefixes):
        yield Denial(("spec", "image"), f"image {image} is not under an allowed prefix "
                     f"({shown or 'the policy allows none'})",
                     _origin(image, entry.defaults.image))
    engine = entry.spec.engine_to_run()
    if engine is not None:
        # An engine runs in the runner image set for it, which only Defaults can set.
        runner = getattr(entry.defaults.runner_images, engine)
        if runner and not _image_ok(runner, prefixes):
            yield Denial(("spec", "runnerImages", engine),
                         f"runner image {runner} is not under an allowed prefix "
                         f"({shown or 'the policy allows none'})", "defaults")


def _shown_prefixes(prefixes: Iterable[ImageName]) -> Iterator[str]:
    for p in prefixes:
        name = "/".join((p.host, *p.path)) + ("/" if not p.tag and not p.digest else "")
        yield name + (f":{p.tag}" if p.tag else "") + (f"@{p.digest}" if p.digest else "")


def _kind_rules(spec: EntrySpec, policy: Policy) -> Iterator[Denial]:
    """What only some kinds ask for: a repository to clone (a task's), an engine to run (a
    stack's, which the policy may not allow at all)."""
    repository = spec.repository_to_clone()
    if repository is not None and policy.spec.repositories is not None:
        prefixes = _repository_prefixes(tuple(policy.spec.repositories))
        yield from _repository(repository, prefixes)
    engine = spec.engine_to_run()
    if engine is not None:
        yield from _stack(engine, policy)


def _repository(repository: Repository, prefixes: tuple[RepositoryURL, ...]
                ) -> Iterator[Denial]:
    if _repository_ok(repository.url, prefixes):
        return
    reason = ("repository URL is not under an allowed prefix" if parse_repository(
        repository.url) else "repository URL cannot be compared safely with the allowed "
        "prefixes (use scheme://host/path without user info, encoded separators or '..')")
    yield Denial(("spec", "repository", "url"), reason)


def _stack(engine: str, policy: Policy) -> Iterator[Denial]:
    rule = policy.spec.stacks
    if not rule.allowed:
        yield Denial(("kind",), "Stacks are not allowed")
        return
    if rule.engines is not None and engine not in rule.engines:
        yield Denial(("spec", "engine"), f"engine {engine} is not allowed "
                     f"({_listing(rule.engines)})")


def _limits(entry: Entry, policy: Policy, *, require: bool) -> Iterator[Denial]:
    limits = policy.spec.limits
    spec = entry.spec
    if limits.timeout is not None:
        bound = _seconds(limits.timeout)
        if entry.timeout_seconds > bound:
            if spec.timeout is None:
                reason = (f"no timeout is set, so runs may take {entry.timeout_seconds}s (the "
                          f"default), more than the limit of {limits.timeout}: set a timeout")
            else:
                reason = f"timeout {spec.timeout} is over the limit of {limits.timeout}"
            yield Denial(("spec", "timeout"), reason,
                         _origin(spec.timeout, entry.defaults.timeout))
    if limits.retries is not None and spec.retries > limits.retries:
        yield Denial(("spec", "retries"),
                     f"{spec.retries} retries are over the limit of {limits.retries}")
    for resource, bound_text in (("cpu", limits.cpu), ("memory", limits.memory)):
        if bound_text is not None:
            yield from _resource(entry, resource, bound_text, require=require)


def _resource(entry: Entry, resource: str, bound_text: str, *, require: bool
              ) -> Iterator[Denial]:
    bound = quantity(bound_text) or Decimal(0)
    resources = entry.spec.resources
    under = entry.defaults.resources
    for section in ("requests", "limits"):
        value = getattr(getattr(resources, section), resource) if resources else None
        declared = getattr(getattr(under, section), resource) if under else None
        loc = ("spec", "resources", section, resource)
        if value is None:
            if section == "limits" and require:
                yield Denial(loc, f"no {resource} limit is set; the policy requires one of at "
                             f"most {bound_text}", "entry")
            continue
        amount = quantity(str(value))
        if amount is None or amount > bound:
            yield Denial(loc, f"{resource} {section[:-1]} {value} is over the limit of "
                         f"{bound_text}", _origin(value, declared))
