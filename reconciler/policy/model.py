"""The operator's Policy file (DESIGN §8) as frozen pydantic models.

A field left out keeps the safe default it documents; a list that is given replaces that
default whole (an empty list allows nothing). Values are checked when the file is loaded, so
a prefix that could never match or a limit that is not a quantity is a located error in the
policy file, not a surprise at run time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from reconciler.declarations.fields import Duration, Quantity
from reconciler.policy.match import parse_image_prefix, parse_repository, quantity
from reconciler.types import API_VERSION

_GLOB = re.compile(r"^[a-z0-9*]([-a-z0-9.*]*[a-z0-9*])?\Z")


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True,
        serialize_by_alias=True,
    )


def _glob(value: str) -> str:
    if len(value) > 253 or not _GLOB.match(value):
        raise ValueError(
            f"{value!r} is not a name or a glob of names: lower-case letters, digits, '-', "
            "'.' and '*' (the only wildcard)"
        )
    return value


def _image_prefix(value: str) -> str:
    if parse_image_prefix(value) is None:
        raise ValueError(
            f"{value!r} is not an image prefix: a registry (registry.example.io/), a "
            "repository under it (registry.example.io/team/) or an image (python:3.12)"
        )
    return value


def _repository_prefix(value: str) -> str:
    parsed = parse_repository(value)
    if parsed is None or (parsed.scheme != "file" and not parsed.host):
        raise ValueError(
            f"{value!r} is not a repository URL prefix: scheme, host and optionally a path, "
            "e.g. https://git.example.io/org/ or git@git.example.io:org/"
        )
    return value


def _bounded_quantity(value: str) -> str:
    number = quantity(value)
    if number is None or number <= 0:
        raise ValueError(f"{value!r} must be a positive resource quantity, e.g. 4 or 8Gi")
    return value


Glob = Annotated[str, AfterValidator(_glob)]
ImagePrefix = Annotated[str, AfterValidator(_image_prefix)]
RepositoryPrefix = Annotated[str, AfterValidator(_repository_prefix)]
Engine = Literal["opentofu", "terraform"]


class Stacks(_Frozen):
    allowed: bool = Field(default=True, description="false: no Stack may be declared.")
    engines: list[Engine] | None = Field(
        default=None, description="Engines stacks may use; default: any."
    )
    previews: bool = Field(
        default=False,
        description="true: preview refs may plan changed stacks (never applied). A plan "
        "runs the module's code, so this is off unless allowed.",
    )


class Limits(_Frozen):
    timeout: Duration | None = Field(
        default=None, description="Longest effective timeout a run may have, e.g. 6h."
    )
    retries: int | None = Field(default=None, ge=0, description="Most retries an entry may ask.")
    cpu: Annotated[Quantity, AfterValidator(_bounded_quantity)] | None = Field(
        default=None,
        description="Largest CPU request or limit of a run; when set, every run on "
        "Kubernetes must set a CPU limit (itself or through Defaults).",
    )
    memory: Annotated[Quantity, AfterValidator(_bounded_quantity)] | None = Field(
        default=None,
        description="Largest memory request or limit of a run; when set, every run on "
        "Kubernetes must set a memory limit.",
    )


class Commits(_Frozen):
    verify: Literal["none", "ssh", "gpg"] = Field(
        default="none",
        description="none: reconcile any commit; ssh or gpg: only a head signed by an "
        "allowed signer.",
    )
    allowed_signers: Path | None = Field(
        default=None,
        description="With ssh: an allowed_signers file (ssh-keygen format), relative to the "
        "policy file.",
    )
    keyring: Path | None = Field(
        default=None,
        description="With gpg: a file of the allowed public keys, relative to the policy file.",
    )

    @model_validator(mode="after")
    def _files_match_mode(self) -> Commits:
        if self.verify == "ssh" and self.allowed_signers is None:
            raise ValueError("verify: ssh needs allowedSigners: FILE")
        if self.verify == "gpg" and self.keyring is None:
            raise ValueError("verify: gpg needs keyring: FILE")
        if self.verify != "ssh" and self.allowed_signers is not None:
            raise ValueError(f"allowedSigners is used only with verify: ssh, not {self.verify}")
        if self.verify != "gpg" and self.keyring is not None:
            raise ValueError(f"keyring is used only with verify: gpg, not {self.verify}")
        return self


class PolicySpec(_Frozen):
    namespaces: list[Glob] | None = Field(
        default=None,
        description="Namespaces runs may go to (Kubernetes executor); default: only the "
        "daemon's --namespace.",
    )
    service_accounts: list[Glob] = Field(
        default_factory=list,
        description="serviceAccountName values allowed; default: none, so run pods get no "
        "service account token.",
    )
    secrets: list[Glob] | None = Field(
        default=None,
        description="Secret names secretEnv, repository.credentialsSecret and "
        "imagePullSecrets may use; default: any.",
    )
    images: list[ImagePrefix] | None = Field(
        default=None, description="Image prefixes runs may use; default: any."
    )
    repositories: list[RepositoryPrefix] | None = Field(
        default=None, description="repository.url prefixes tasks may clone; default: any."
    )
    stacks: Stacks = Field(default_factory=Stacks, description="What Stacks may do.")
    limits: Limits = Field(
        default_factory=Limits, description="Upper bounds; default: the declarations' own."
    )
    commits: Commits = Field(
        default_factory=Commits, description="Which commits are reconciled."
    )


class Policy(_Frozen):
    """What the declarations of a repository may ask for, set by the daemon's operator."""

    api_version: Literal["reconciler.io/v1alpha1"] = Field(description=f"Always {API_VERSION}.")
    kind: Literal["Policy"] = Field(description="Policy")
    spec: PolicySpec = Field(default_factory=PolicySpec)


DEFAULT_POLICY = Policy(api_version=API_VERSION, kind="Policy")
"""What applies when the daemon is given no policy file."""
