"""What a secret is masked as: every form a program prints it in, and nothing shorter than the
documented bounds. The forms here are made by the standard library (and Terraform's escaping
rules), independently of the code under test."""

from __future__ import annotations

import base64
import io
import itertools
import json
import shlex
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.executors.local.masking import MaskingWriter
from reconciler.redact import MASK, MIN_LINE_LENGTH, MIN_SECRET_LENGTH, Redactor

SECRET = 'QUOTE"ZQX\\WVK ${x} %{y} \u00e9/<&>\'?= tail'


def terraform_quoted(text: str) -> str:
    """How Terraform prints a string value in a plan or a diagnostic."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


PRINTED = {
    "exact": SECRET,
    "json": json.dumps(SECRET),
    "json-utf8": json.dumps(SECRET, ensure_ascii=False),
    "json-unquoted": json.dumps(SECRET)[1:-1],
    "json-twice": json.dumps(json.dumps(SECRET)),
    "go-json": json.dumps(SECRET, ensure_ascii=False).replace("<", "\\u003c")
    .replace(">", "\\u003e").replace("&", "\\u0026"),
    "shell": shlex.quote(SECRET),
    "shell-escaped-quote": "'" + SECRET.replace("'", "'\\''") + "'",
    "terraform": terraform_quoted(SECRET),
    "terraform-no-templates": '"' + SECRET.replace("\\", "\\\\").replace('"', '\\"') + '"',
    "url": quote(SECRET),
    "url-all": quote(SECRET, safe=""),
    "url-plus": quote_plus(SECRET),
    "base64": base64.b64encode(SECRET.encode()).decode(),
    "base64-unpadded": base64.b64encode(SECRET.encode()).decode().rstrip("="),
    "base64-url": base64.urlsafe_b64encode(SECRET.encode()).decode(),
    "base64-newline": base64.b64encode(SECRET.encode() + b"\n").decode(),
}

ENCODED = sorted(set(PRINTED) - {"exact"})
"""The forms other than the value itself (which has been masked all along)."""


def unmasked(text: str, form: str = SECRET) -> list[str]:
    """Pieces of the secret, or of the printed form of it, still readable in `text`."""
    pieces = ("ZQX", "WVK", "tail", form[:12], form[-12:])
    return [piece for piece in pieces if piece in text]


@pytest.mark.parametrize("form", ENCODED)
def test_each_printed_form_is_masked(form: str) -> None:
    printed = f"value: {PRINTED[form]} (end)"
    masked = Redactor([SECRET])(printed)
    assert unmasked(masked, PRINTED[form]) == [], masked
    assert masked.startswith("value: ")
    assert masked.endswith(" (end)")


@pytest.mark.parametrize("form", ["json", "json-utf8", "go-json", "terraform"])
def test_quoted_forms_keep_their_quotes(form: str) -> None:
    line = json.dumps({"token": SECRET}, ensure_ascii=form == "json")
    masked = Redactor([SECRET])(line)
    assert json.loads(masked) == {"token": MASK}
    assert Redactor([SECRET])(PRINTED[form]) == f'"{MASK}"'


@pytest.mark.parametrize("prefix", [b"", b"p", b"pq", b"pqr", b"pqrs"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_inside_a_longer_stream_is_masked_at_every_alignment(
    prefix: bytes, encode: object
) -> None:
    assert callable(encode)
    stream = encode(prefix + SECRET.encode() + b"and more bytes after it").decode()
    masked = Redactor([SECRET])(stream)
    # What encodes the secret's bytes alone is gone; only a few characters either side stay.
    inner = stream[(len(prefix) * 4) // 3 + 4:((len(prefix) + len(SECRET.encode())) * 4) // 3 - 4]
    assert inner not in masked
    assert len(inner) > 20
    assert masked.count(MASK) == 1
    assert len(masked) <= len(stream) - len(inner)


KEY = (
    "-----BEGIN TEST KEY-----\n"
    "MIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9AgEAAkEAu1SU1LfVLPHCozMx\n"
    "}\n"
    "  4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u  \n"
    "-----END TEST KEY-----\n"
)


def test_each_line_of_a_multi_line_secret_is_masked_alone() -> None:
    redact = Redactor([KEY])
    for line in KEY.splitlines():
        if len(line.strip()) >= MIN_LINE_LENGTH:
            printed = f"[debug] read {line.strip()}, fine"
            assert redact(printed) == f"[debug] read {MASK}, fine"
    assert redact(json.dumps(KEY)) == f'"{MASK}"'
    # Lines too short to tell apart from any other output, and short values, stay.
    redact.add("abc")
    assert len("abc") < MIN_SECRET_LENGTH
    assert redact("}\n-----\nabc\n") == "}\n-----\nabc\n"


def test_short_secrets_have_no_ambiguous_base64_forms() -> None:
    # Base64 of a 4-character value on its own is masked; pieces of a stream that short could
    # be anything, so they are not.
    redact = Redactor(["abcd"])
    assert redact(base64.b64encode(b"abcd").decode()) == MASK
    assert redact("YWJj") == "YWJj"


def test_overlapping_secrets_are_masked_whole() -> None:
    redact = Redactor(["zzzz-abcd", "abcd-yyyy"])
    assert redact("<zzzz-abcd-yyyy>") == f"<{MASK}>"


def test_many_secrets_are_masked_in_one_pass() -> None:
    values = [f"secret-{n:03d}/\"{'x' * (n % 7)}" for n in range(100)]
    redact = Redactor(values)
    text = "\n".join(f"line {n}: {json.dumps(v)} {quote(v)}" for n, v in enumerate(values))
    masked = redact(text)
    assert "secret-" not in masked
    assert masked.count(MASK) == 200


def test_the_run_log_masker_masks_what_the_redactor_masks() -> None:
    text = "".join(f"{name}: {form}\n" for name, form in PRINTED.items())
    out = io.BytesIO()
    writer = MaskingWriter(out, [SECRET])
    writer.write(text.encode())
    writer.close()
    assert out.getvalue().decode() == Redactor([SECRET])(text)
    assert unmasked(out.getvalue().decode()) == []


@pytest.mark.parametrize("form", ENCODED)
def test_a_form_split_across_reads_is_masked(form: str) -> None:
    data = f"before {PRINTED[form]} after\n".encode()
    for cut in range(1, len(data)):
        out = io.BytesIO()
        writer = MaskingWriter(out, [SECRET])
        writer.write(data[:cut])
        writer.write(data[cut:])
        writer.close()
        text = out.getvalue().decode()
        assert unmasked(text, PRINTED[form]) == [], (cut, text)
        assert text == f"before {Redactor([SECRET])(PRINTED[form])} after\n"


def test_a_long_secret_is_masked_whole_and_where_it_is_cut_short() -> None:
    value = "".join(f"{n:05d}\"" for n in range(20_000))  # 120,000 characters, one line
    redact = Redactor([value])
    assert redact(f"<{json.dumps(value)}>") == f'<"{MASK}">'
    cut = json.dumps(value)[:50_000]
    assert redact(f"{cut}... (truncated)") == f'"{MASK}... (truncated)'
    out = io.BytesIO()
    writer = MaskingWriter(out, [value])
    data = f"start {value} end\n".encode()
    for offset in range(0, len(data), 4096):
        writer.write(data[offset:offset + 4096])
    writer.close()
    assert out.getvalue().decode() == f"start {MASK} end\n"


@settings(deadline=None)  # a loaded machine must not fail it
@given(
    pieces=st.lists(
        st.one_of(st.sampled_from([PRINTED["json"], PRINTED["terraform"], PRINTED["url"],
                                   PRINTED["base64"], SECRET[:9], "\n", '"', "\\"]),
                  st.text(alphabet='ab"\\ZQ=\n ', max_size=6)),
        max_size=12,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
)
def test_streaming_masks_escaped_forms_exactly_like_masking_the_whole_text(
    pieces: list[str], cuts: list[int]
) -> None:
    data = "".join(pieces).encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    out = io.BytesIO()
    writer = MaskingWriter(out, [SECRET])
    for start, end in itertools.pairwise(bounds):
        writer.write(data[start:end])
    writer.close()
    text = out.getvalue().decode()
    assert text == Redactor([SECRET])(data.decode())
    for form in ("json", "terraform", "url", "base64"):
        assert PRINTED[form] not in text
