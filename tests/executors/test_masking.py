"""Secret values are masked in a run's log as it is written, however the output is split."""

from __future__ import annotations

import io
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.executors.local.masking import MaskingWriter
from reconciler.redact import MASK, Redactor

SECRET = "s3cr3t-value"


def written(chunks: list[bytes], secrets: list[str]) -> str:
    out = io.BytesIO()
    writer = MaskingWriter(out, secrets)
    for chunk in chunks:
        writer.write(chunk)
    writer.close()
    return out.getvalue().decode()


def test_secret_split_byte_by_byte_is_masked() -> None:
    data = f"before {SECRET} after\n".encode()
    assert written([data[i:i + 1] for i in range(len(data))], [SECRET]) == (
        f"before {MASK} after\n"
    )


def test_output_without_secrets_passes_through() -> None:
    assert written([b"abc", b"\xc3", b"\xa9\n"], []) == "abc\u00e9\n"


def test_text_far_from_a_secret_is_written_at_once() -> None:
    out = io.BytesIO()
    writer = MaskingWriter(out, [SECRET])
    writer.write(b"progress 10%...")
    assert out.getvalue() == b"progress 10%..."
    writer.write(b"then s3c")
    assert out.getvalue() == b"progress 10%...then "  # "s3c" may begin the secret
    writer.write(b"ond line\n")
    assert out.getvalue() == b"progress 10%...then s3cond line\n"


def test_short_values_are_not_masked() -> None:
    assert written([b"yes abc yes\n"], ["abc"]) == "yes abc yes\n"


@settings(deadline=None)  # a loaded machine must not fail it
@given(
    pieces=st.lists(
        st.one_of(st.sampled_from(["s3cr3t-value", "token-A1", "s3cr", "\n"]),
                  st.text(alphabet="abst3-\n ", max_size=6)),
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_streaming_masks_exactly_like_masking_the_whole_text(
    pieces: list[str], cuts: list[int]
) -> None:
    secrets = ["s3cr3t-value", "token-A1"]
    data = "".join(pieces).encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert written(chunks, secrets) == Redactor(secrets)(data.decode())
