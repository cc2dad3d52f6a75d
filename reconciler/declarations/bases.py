"""What every declaration document has, and what every entry spec answers about itself.

Code that works on any entry (effective specs, hashing, repository paths, diffs, policy)
asks the spec through these methods instead of testing which kind it is: a kind's spec
overrides the ones where it differs from the neutral default, so a new kind is its own models
plus a line in `models.ENTRY_DOCUMENTS`, and no module below `kinds/` names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from reconciler.declarations.fields import LabelKey, LabelValue, Name
from reconciler.declarations.paths import ModuleScanner, Resolution
from reconciler.types import API_VERSION

RUN_REQUESTED = "reconciler.io/run-requested"
PLAN_REQUESTED = "reconciler.io/plan-requested"
_OURS = "reconciler.io/"
_REQUESTS = (RUN_REQUESTED, PLAN_REQUESTED)
MAX_REQUEST_VALUE = 256

if TYPE_CHECKING:
    from reconciler.declarations.files import FileSource
    from reconciler.declarations.models import (
        DefaultsSpec,
        Repository,
        Resources,
        SecretRef,
        Toleration,
    )


class Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        str_strip_whitespace=False,
    )


class Metadata(Frozen):
    name: Name = Field(
        description="Unique per kind across the repository: a DNS-1123 label of at most 40 "
        "characters. Identity is KIND/NAME; renaming counts as removing and adding."
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        description="Free-form labels, copied to Kubernetes objects and shown in status.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description=f"Free-form notes; not part of the spec hash. Changing {RUN_REQUESTED} "
        f"(any text) runs the entry once more; {PLAN_REQUESTED} plans a Stack once more. "
        f"No other {_OURS} key is known.",
    )

    @field_validator("annotations")
    @classmethod
    def _known_requests(cls, annotations: dict[str, str]) -> dict[str, str]:
        # A misspelt request key would be a request that silently never runs.
        for key, value in annotations.items():
            if key.startswith(_OURS) and key not in _REQUESTS:
                raise ValueError(f"unknown annotation {key!r}: the {_OURS} keys are "
                                 f"{' and '.join(_REQUESTS)}")
            if key in _REQUESTS and (len(value) > MAX_REQUEST_VALUE or "\n" in value):
                raise ValueError(f"{key}: one line of at most {MAX_REQUEST_VALUE} characters")
        return annotations


class EntrySpec(Frozen):
    """The spec of an entry (a document with an identity, runs and a status file).

    Every kind's spec has the fields below, but declares them itself: pydantic lists inherited
    fields first, and each kind's schema and status files keep the order its documentation
    reads in. They are named here for the type checker, so code on any entry can read them.
    """

    if TYPE_CHECKING:
        env: dict[str, str]
        secret_env: dict[str, SecretRef]
        resources: Resources | None
        timeout: str | None
        retries: int
        depends_on: list[str]
        suspend: bool
        node_selector: dict[str, str]
        tolerations: list[Toleration]
        service_account_name: str | None

    def own_defaults(self, defaults: DefaultsSpec) -> dict[str, Any]:
        """What Defaults give the fields only this kind has, as a `model_copy` update (the
        fields every kind has are merged by `effective.effective_spec`)."""
        return {}

    def image_to_run(self) -> str | None:
        """The container image the entry declares (or takes from Defaults) for its runs."""
        return None

    def engine_to_run(self) -> str | None:
        """The infrastructure engine its runs drive (opentofu, terraform); such runs use the
        runner image Defaults set for that engine."""
        return None

    def repository_to_clone(self) -> Repository | None:
        """The Git repository cloned before each run."""
        return None

    def resolve_sources(self, files: FileSource, scanner: ModuleScanner) -> Resolution:
        """The repository folders and files its runs use, with their Git ids (hashed with
        the spec) and any file contents the executor writes for the run."""
        return Resolution()

    @classmethod
    def on_removal(cls, spec: Self | None, *, clean: bool) -> tuple[bool, str]:
        """Whether merging the removal of an entry of this kind destroys what it made, and
        the note that says so. `spec` is its last valid spec (None when the base commit
        could not load it); `clean`: the head commit loaded without errors."""
        return False, ""


class DocumentBase(Frozen):
    schema_description: ClassVar[str]
    """What its JSON Schema (`schemas/KIND.json`) says the document is."""

    api_version: Literal["reconciler.io/v1alpha1"] = Field(
        description=f"Always {API_VERSION}."
    )
    metadata: Metadata


class EntryDocument(DocumentBase):
    """A document that declares an entry. `kind` and `spec` are narrowed by each kind."""

    kind: str
    spec: EntrySpec

    @classmethod
    def spec_model(cls) -> type[EntrySpec]:
        return cast(type[EntrySpec], cls.model_fields["spec"].annotation)
