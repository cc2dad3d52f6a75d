"""The declaration documents users write (DESIGN §2), as frozen pydantic models.

Field names are snake_case in Python and camelCase in YAML (by alias). Every field has a
description: it is what editors show through the JSON Schemas in `schemas/`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator

from reconciler.declarations.bases import (
    PLAN_REQUESTED,
    RUN_REQUESTED,
    DocumentBase,
    EntryDocument,
    EntrySpec,
    Frozen,
    Metadata,
)
from reconciler.declarations.fields import (
    Cron,
    DependencyList,
    Duration,
    EnvName,
    EnvValue,
    FileName,
    FiniteJson,
    GitRef,
    GitUrl,
    KubeName,
    Quantity,
    RelativePath,
    SecretKey,
    TimeZone,
    VarName,
)
from reconciler.declarations.files import FileSource
from reconciler.declarations.paths import ModuleScanner, Resolution, stack_sources, task_files
from reconciler.types import ENTRY_KINDS, Kind


class SecretRef(Frozen):
    secret: KubeName = Field(
        description="Secret name: a Kubernetes Secret, or a folder under --secrets-dir locally."
    )
    key: SecretKey = Field(description="Key inside the secret (a file name locally).")


class ResourceList(Frozen):
    model_config = ConfigDict(extra="allow")  # extended resources such as nvidia.com/gpu

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. 100m or 1.")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. 128Mi or 1Gi.")
    ephemeral_storage: Quantity | None = Field(
        default=None, description="Scratch disk, e.g. 1Gi."
    )


class Resources(Frozen):
    requests: ResourceList = Field(
        default_factory=ResourceList, description="What the run is guaranteed."
    )
    limits: ResourceList = Field(
        default_factory=ResourceList, description="What the run may use at most."
    )


class Toleration(Frozen):
    key: str | None = Field(default=None, description="Taint key to tolerate.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Match rule.")
    value: str | None = Field(default=None, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, le=2**63 - 1,
        description="With NoExecute: how long to stay once tainted.",
    )


class Repository(Frozen):
    url: GitUrl = Field(
        min_length=1,
        description="Git URL cloned into /workspace before the run (https, ssh or git).",
    )
    ref: GitRef = Field(default="main", min_length=1, description="Branch, tag or commit.")
    credentials_secret: KubeName | None = Field(
        default=None,
        description="Secret holding `username`/`password` (HTTPS) or `ssh-privatekey` "
        "and `known_hosts` (SSH).",
    )


EnvMap = Annotated[
    dict[EnvName, EnvValue], Field(description="Environment variables, name to value.")
]
SecretEnvMap = Annotated[
    dict[EnvName, SecretRef],
    Field(description="Environment variables read from secrets; never written to status or logs."),
]
Dependencies = Annotated[
    DependencyList,
    Field(description="Entries that must have succeeded at their current version first, "
          f"written {' or '.join(f'{k.prefix}/NAME' for k in ENTRY_KINDS)}."),
]


class RepositoryFile(Frozen):
    """A Task file whose content is a file of the repository, read at the same commit."""

    path: RelativePath = Field(
        description="File to copy, relative to the repository root, e.g. scripts/report.py. "
        "Its content at the declaration's commit is part of the task's version."
    )


def _file_source(value: Any) -> str:
    return "repository" if isinstance(value, dict | RepositoryFile) else "inline"


TaskFile = Annotated[
    Annotated[str, Tag("inline")] | Annotated[RepositoryFile, Tag("repository")],
    Discriminator(_file_source),
]


class TaskSpec(EntrySpec):
    image: str | None = Field(
        default=None, min_length=1,
        description="Container image (kubernetes executor). Falls back to Defaults.",
    )
    command: list[str] = Field(
        min_length=1, description="The program and its fixed arguments, as a list."
    )
    args: list[str] = Field(default_factory=list, description="Extra arguments after command.")
    env: EnvMap = Field(default_factory=dict)
    secret_env: SecretEnvMap = Field(default_factory=dict)
    files: dict[FileName, TaskFile] = Field(
        default_factory=dict,
        description="Files written read-only under /task (the work directory locally): name to "
        "content, or to {path: FILE} to copy a file of the repository.",
    )
    repository: Repository | None = Field(
        default=None, description="A Git repository cloned into /workspace before the run."
    )
    resources: Resources | None = Field(
        default=None, description="Requests and limits. Falls back to Defaults."
    )
    timeout: Duration | None = Field(
        default=None,
        description="Longest a run may take before it is stopped as TimedOut, e.g. 30m. "
        "Falls back to Defaults, then 1h.",
    )
    retries: int = Field(
        default=0, ge=0, le=10, description="Extra attempts after a failure, with backoff."
    )
    schedule: Cron | None = Field(
        default=None,
        description="Also run on this cron schedule (5 fields, in timeZone), e.g. '0 3 * * *'.",
    )
    time_zone: TimeZone = Field(
        default="UTC",
        description="IANA time zone the schedule fires in, e.g. Europe/Berlin; across a "
        "daylight-saving change a fire time that does not exist is skipped, one that "
        "repeats fires once.",
    )
    depends_on: Dependencies = Field(default_factory=list)
    suspend: bool = Field(default=False, description="true: start no new runs.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes node labels the run must land on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Kubernetes taints the run tolerates."
    )
    service_account_name: KubeName | None = Field(
        default=None, description="Kubernetes service account of the run's pod."
    )

    def own_defaults(self, defaults: DefaultsSpec) -> dict[str, Any]:
        return {"image": self.image or defaults.image}

    def image_to_run(self) -> str | None:
        return self.image

    def repository_to_clone(self) -> Repository | None:
        return self.repository

    def resolve_sources(self, files: FileSource, scanner: ModuleScanner) -> Resolution:
        return task_files(files, self)


class Drift(Frozen):
    schedule: Cron | None = Field(
        default=None, description="Cron schedule (5 fields, UTC) of drift plans."
    )
    remediate: bool = Field(default=False, description="true: apply when drift is found.")


class StackSpec(EntrySpec):
    engine: Literal["opentofu", "terraform"] = Field(
        default="opentofu", description="Which engine runs the module."
    )
    path: RelativePath = Field(
        description="Root module folder, relative to the repository root; must hold *.tf files."
    )
    vars: dict[VarName, FiniteJson] = Field(
        default_factory=dict, description="Input variables, name to value (any JSON value)."
    )
    var_files: list[RelativePath] = Field(
        default_factory=list, description="Variable files, relative to the stack's path."
    )
    env: EnvMap = Field(default_factory=dict)
    secret_env: SecretEnvMap = Field(default_factory=dict)
    apply: Literal["auto", "plan"] = Field(
        default="auto", description="auto: apply on change; plan: plan only, never apply."
    )
    drift: Drift = Field(default_factory=Drift, description="Scheduled drift detection.")
    prune: bool = Field(
        default=False,
        description="true: destroy the stack's resources when its declaration is removed "
        "(only when that commit loaded without errors).",
    )
    timeout: Duration | None = Field(
        default=None, description="Longest one run may take, e.g. 20m. Falls back to Defaults."
    )
    lock_timeout: Duration | None = Field(
        default=None, description="How long to wait for a remote state lock, e.g. 5m."
    )
    retries: int = Field(default=0, ge=0, le=10, description="Extra attempts after a failure.")
    depends_on: Dependencies = Field(default_factory=list)
    suspend: bool = Field(default=False, description="true: start no new runs.")
    resources: Resources | None = Field(
        default=None, description="Requests and limits of the runner pod."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerated taints.")
    service_account_name: KubeName | None = Field(
        default=None, description="Service account of the runner pod (for cloud credentials)."
    )

    def engine_to_run(self) -> str | None:
        return self.engine

    def resolve_sources(self, files: FileSource, scanner: ModuleScanner) -> Resolution:
        return stack_sources(files, self, scanner)

    @classmethod
    def on_removal(cls, spec: Self | None, *, clean: bool) -> tuple[bool, str]:
        if spec is None or not spec.prune:
            return False, "prune is off: its resources are left in place"
        if not clean:
            return False, "prune is on, but nothing is destroyed while the head commit has errors"
        return True, "prune is on: merging destroys this stack's resources"


class RunnerImages(Frozen):
    """A stack pod runs reconciler's stack runner with the engine, so its image must hold
    Python, reconciler and the engine: the daemon's own image does (`--runner-image`)."""

    opentofu: str | None = Field(
        default=None, min_length=1,
        description="Image that runs opentofu stacks on Kubernetes; default: the daemon's "
        "--runner-image.",
    )
    terraform: str | None = Field(
        default=None, min_length=1,
        description="Image that runs terraform stacks on Kubernetes; default: the daemon's "
        "--runner-image.",
    )


class DefaultsSpec(Frozen):
    namespace: KubeName | None = Field(
        default=None, description="Kubernetes namespace for runs."
    )
    image: str | None = Field(default=None, min_length=1, description="Default Task image.")
    resources: Resources | None = Field(default=None, description="Default requests/limits.")
    env: EnvMap = Field(default_factory=dict)
    timeout: Duration | None = Field(default=None, description="Default run timeout.")
    runner_images: RunnerImages = Field(
        default_factory=RunnerImages, description="Images that run stacks, per engine."
    )
    image_pull_secrets: list[KubeName] = Field(
        default_factory=list, description="Secrets used to pull images on Kubernetes."
    )
    service_account_name: KubeName | None = Field(
        default=None, description="Default service account of run pods."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerated taints.")


class TaskDocument(EntryDocument):
    """A container to run once per version of its declaration, and optionally on a cron."""

    schema_description = ("A reconciler Task: a container run once per version of its "
                          "declaration, and optionally on a cron schedule.")

    kind: Literal["Task"] = Field(description="Task")
    spec: TaskSpec

    @field_validator("metadata")
    @classmethod
    def _no_plan_request(cls, metadata: Metadata) -> Metadata:
        if PLAN_REQUESTED in metadata.annotations:
            raise ValueError(f"{PLAN_REQUESTED}: a Task does not plan; use {RUN_REQUESTED}")
        return metadata


class StackDocument(EntryDocument):
    """An OpenTofu/Terraform root module applied on change and planned on a schedule."""

    schema_description = ("A reconciler Stack: an OpenTofu/Terraform root module applied on "
                          "change and planned on a schedule for drift.")

    kind: Literal["Stack"] = Field(description="Stack")
    spec: StackSpec


class DefaultsDocument(DocumentBase):
    """Defaults merged under every Task and Stack. At most one per repository."""

    schema_description = ("Defaults merged under every Task and Stack of the repository (at "
                          "most one per repository).")

    kind: Literal["Defaults"] = Field(description="Defaults")
    spec: DefaultsSpec = Field(default_factory=DefaultsSpec)


ENTRY_DOCUMENTS: dict[Kind, type[EntryDocument]] = {
    Kind.TASK: TaskDocument,
    Kind.STACK: StackDocument,
}
"""The one table of entry kinds: each kind's document model, in the order kinds are listed.
Everything below `kinds/` that lists or tells apart the kinds derives from it (and from
the methods of `EntrySpec`)."""

Spec = TaskSpec | StackSpec
"""Any entry spec as a closed union, for the exhaustive matches of the layers above (and for
validating a stored entry); a test keeps it equal to the table's specs."""

DOCUMENT_MODELS: dict[str, type[EntryDocument] | type[DefaultsDocument]] = {
    **{kind.value: model for kind, model in ENTRY_DOCUMENTS.items()},
    Kind.DEFAULTS.value: DefaultsDocument,
}
"""Every document model by `kind`: the entries', then Defaults."""

_SPEC_KINDS = {model.spec_model(): kind for kind, model in ENTRY_DOCUMENTS.items()}


def spec_kind(spec: EntrySpec) -> Kind:
    """The kind whose document holds a spec of this type."""
    return _SPEC_KINDS[type(spec)]
