"""The table of entry document models is the one list of kinds below `kinds/`: what is
derived from it stays in step with it and with `types.Kind`."""

from __future__ import annotations

from typing import get_args

from reconciler.declarations.models import DOCUMENT_MODELS, ENTRY_DOCUMENTS, Spec, spec_kind
from reconciler.declarations.ours import KINDS
from reconciler.types import ENTRY_KINDS, Kind


def test_every_entry_kind_has_a_document_model_and_nothing_else_does() -> None:
    assert tuple(ENTRY_DOCUMENTS) == ENTRY_KINDS
    assert tuple(DOCUMENT_MODELS) == tuple(kind.value for kind in Kind) == KINDS


def test_each_document_model_is_written_with_its_own_kind() -> None:
    for kind, model in DOCUMENT_MODELS.items():
        assert get_args(model.model_fields["kind"].annotation) == (kind,)


def test_the_spec_union_holds_exactly_the_specs_of_the_table() -> None:
    assert get_args(Spec) == tuple(model.spec_model() for model in ENTRY_DOCUMENTS.values())


def test_a_spec_knows_the_kind_of_its_document() -> None:
    for kind, model in ENTRY_DOCUMENTS.items():
        spec = model.spec_model().model_construct()
        assert spec_kind(spec) is kind
