"""Field types for declarations: each validates one thing users get wrong and says how to fix it.

Validators raise `ValueError` with a message written for the person who edits the YAML; pydantic
turns it into an error located at the offending key or value.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from fractions import Fraction
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, JsonValue, WithJsonSchema

from reconciler.declarations.cron import check_cron, check_zone, cron_trigger
from reconciler.declarations.limits import (
    MAX_DURATION_SECONDS,
    MAX_PATH_BYTES,
    MAX_PATH_COMPONENT_BYTES,
    MAX_QUANTITY,
    MAX_QUANTITY_LENGTH,
)
from reconciler.types import ENTRY_KINDS

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_QUANTITY = re.compile(
    r"^[+-]?(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_SUFFIXES: dict[str | None, int | Fraction] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}
_MAX_DAYS = MAX_DURATION_SECONDS // 86400
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_PREFIXES = tuple(kind.prefix for kind in ENTRY_KINDS)
_DEPENDENCY_FORMS = " or ".join(f"{prefix}/NAME" for prefix in _PREFIXES)

__all__ = [
    "check_cron",
    "check_name",
    "check_relative_path",
    "check_zone",
    "cron_trigger",
    "parse_duration",
]

MAX_NAME_LENGTH = 40


def check_name(value: str) -> str:
    """A valid `metadata.name` (DNS-1123 label of at most 40 characters), or ValueError."""
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{_shown(value)} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not _DNS_LABEL.match(value):
        raise ValueError(
            f"{_shown(value)} is not a DNS-1123 label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{_shown(value)} is not a valid Kubernetes object name (DNS-1123 subdomain)"
        )
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(
            f"{_shown(value)} is not a valid environment variable name: letters, digits and '_', "
            "not starting with a digit"
        )
    return value


def _scalar_to_str(value: Any) -> Any:
    """YAML turns `8080` into an int; environment values are strings, so accept whole numbers,
    which read back exactly as written. Everything else that YAML turns into another type is
    refused: `true` would become `True`, `1.10` would become `1.1`, `2024-01-01` a date."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{_shown(value)} must be a string: quote it")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | date):
        raise ValueError(
            f"YAML read this value as {type(value).__name__} {_shown(value)}, which may not "
            "be what is written: quote it to keep it as text"
        )
    return value


def parse_duration(value: str) -> timedelta:
    """`30m`, `1h30m`, `45s`, `2d` → timedelta, at most 30 days. Raises ValueError for
    anything else."""
    match = _DURATION.match(value)
    if not value or match is None:
        raise ValueError(
            f"{_shown(value)} is not a duration: use whole numbers with units d, h, m, s, "
            "in that order, e.g. 30s, 5m, 1h30m"
        )
    # Compared before a timedelta is built: 1000000000d overflows one.
    parts = [int(g) if len(g or "") <= 12 else 10**12 for g in match.groups(default="0")]
    days, hours, minutes, seconds = parts
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total > MAX_DURATION_SECONDS:
        raise ValueError(f"{_shown(value)} is longer than the limit of {_MAX_DAYS}d")
    if total <= 0:
        raise ValueError(f"{_shown(value)} must be longer than zero")
    return timedelta(seconds=total)


def _shown(value: Any) -> str:
    """`value` quoted for a message, shortened when long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _quantity(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is not a resource quantity")
    if isinstance(value, int | float):
        value = str(value)
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if match is None or len(value) > MAX_QUANTITY_LENGTH:
        raise ValueError(
            f"{_shown(value)} is not a Kubernetes resource quantity, e.g. 100m, 0.5, 1, "
            "128Mi, 2Gi"
        )
    number, exponent, suffix = match.groups()
    power = int(exponent or 0)
    if power > 64:
        raise ValueError(f"{_shown(value)} is too large; the limit is 1E (10^18)")
    # A tiny one is rounded up by Kubernetes; its power is clamped to keep it cheap.
    power = max(power, -64)
    unit = _SUFFIXES.get(suffix, 1)
    rough = float(number) * 10.0**power * float(unit)
    if rough < MAX_QUANTITY / 2:
        return value  # the common case, without exact arithmetic (10 times faster)
    if rough > MAX_QUANTITY * 2 or Fraction(number) * Fraction(10) ** power * unit > MAX_QUANTITY:
        raise ValueError(f"{_shown(value)} is too large; the limit is 1E (10^18)")
    return value


def check_relative_path(value: str) -> str:
    """A repository-relative POSIX path: not absolute, no `..`, no backslashes."""
    if not value or value.strip() != value or any(ord(c) < 32 for c in value):
        raise ValueError(f"{_shown(value)} is not a path")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise ValueError(f"the path is {size} bytes long; the limit is {MAX_PATH_BYTES}")
    for part in value.split("/"):
        if len(part.encode("utf-8", "surrogatepass")) > MAX_PATH_COMPONENT_BYTES:
            raise ValueError(
                f"{_shown(part)} is longer than {MAX_PATH_COMPONENT_BYTES} bytes, the limit "
                "for one folder or file name"
            )
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{_shown(value)} is absolute; paths are relative to the repository root")
    if "\\" in value:
        raise ValueError(f"{_shown(value)} contains '\\'; use '/' between folders")
    parts = value.split("/")
    if ".." in parts:
        raise ValueError(f"{_shown(value)} leaves the repository ('..' is not allowed)")
    return "/".join(p for p in parts if p not in ("", ".")) or "."


_GIT_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)(?!.*//)[^\s~^:?*\[\\\x00-\x1f\x7f]+(?<![./])$")
_MAX_GIT_REF = 255


def _git_ref(value: str) -> str:
    """A branch, tag or commit as `git check-ref-format` accepts one; never something that
    begins with `-`, which git would read as an option (`--upload-pack=...`)."""
    if len(value) > _MAX_GIT_REF or not _GIT_REF.match(value) or value.endswith(".lock"):
        raise ValueError(
            f"{_shown(value)} is not a Git branch, tag or commit: no leading '-', no spaces, "
            "'..', '~', '^', ':', '?', '*', '[' or '\\', not ending in '/', '.' or '.lock'"
        )
    return value


def _git_url(value: str) -> str:
    """A clone URL that git reads as a URL, never as an option or two words."""
    if value.startswith("-") or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{_shown(value)} is not a Git URL: it may not begin with '-' or "
                         "hold spaces or control characters")
    return value


def _file_name(value: str) -> str:
    value = check_relative_path(value)
    if value == ".":
        raise ValueError("a file needs a name")
    return value


def _depends_on(value: str) -> str:
    prefix, sep, name = value.partition("/")
    if not sep or prefix not in _PREFIXES:
        raise ValueError(f"{_shown(value)} must be written {_DEPENDENCY_FORMS}")
    check_name(name)
    return value


def _label_key(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if prefix:
        _subdomain(prefix)
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(f"{_shown(value)} is not a valid label key")
    return value


def _label_value(value: Any) -> Any:
    value = _scalar_to_str(value)
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(f"{_shown(value)} is not a valid label value (at most 63 characters)")
    return value


def _var_name(value: str) -> str:
    if not _VAR_NAME.match(value):
        raise ValueError(
            f"{_shown(value)} is not a valid variable name: letters, digits, '_' and '-', "
            "starting with a letter or '_'"
        )
    return value


def _config_key(value: str) -> str:
    if not _CONFIG_KEY.match(value):
        raise ValueError(
            f"{_shown(value)} is not a valid secret key: letters, digits, '-', '_', '.'"
        )
    return value


def _finite(value: Any) -> Any:
    """JSON has no infinity nor NaN (`.inf`, `.nan`, `1e400` in YAML): an engine given one
    would fail the run, so say it now."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item!r} is not a number JSON can hold")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    Field(json_schema_extra={"pattern": _DNS_LABEL.pattern, "maxLength": MAX_NAME_LENGTH}),
]
KubeName = Annotated[
    str, AfterValidator(_subdomain),
    Field(json_schema_extra={"pattern": _DNS_SUBDOMAIN.pattern, "maxLength": 253}),
]
EnvName = Annotated[
    str, AfterValidator(_env_name), Field(json_schema_extra={"pattern": _ENV_NAME.pattern})
]
_STRING_OR_NUMBER = WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}]})
_STRING_OR_INTEGER = WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}]})

EnvValue = Annotated[str, BeforeValidator(_scalar_to_str), _STRING_OR_INTEGER]


def _up_to(limit: int) -> str:
    """A pattern for the whole numbers from 0 to `limit`, leading zeros allowed."""
    digits = str(limit)
    shorter = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    # As long as the limit: equal up to a digit that is smaller, anything after it.
    below = [f"{digits[:i]}[0-{int(d) - 1}]" + (f"[0-9]{{{len(digits) - i - 1}}}"
                                                if i < len(digits) - 1 else "")
             for i, d in enumerate(digits) if d != "0"]
    return "0*(?:" + "|".join([*shorter, *below, digits]) + ")"


# At least one digit that is not 0 (zero is not a duration), and no part longer than the
# limit by itself; parts that add up to more are left to the loader.
DURATION_PATTERN = ("^(?=.*[1-9])" + "".join(
    f"(?:{_up_to(MAX_DURATION_SECONDS // seconds)}{unit})?"
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))) + "$")
Duration = Annotated[
    str, AfterValidator(_duration), Field(json_schema_extra={"pattern": DURATION_PATTERN})
]


def _any_case(word: str) -> str:
    """`word` as a pattern in either case: JSON Schema patterns take no flags."""
    return "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in word)


def _cron_field(number: str, step: str, names: tuple[str, ...] = (),
                words: tuple[str, ...] = ()) -> str:
    """One cron field as a pattern: a list of `*`, N, N-N, each with an optional /STEP,
    or (where the field has names) NAME and NAME-NAME, as cron.py and APScheduler read them."""
    span = rf"(?:\*|{number}(?:-{number})?)(?:/{step})?"
    if names:
        name = "(?:" + "|".join(_any_case(n) for n in names) + ")"
        span = rf"{span}|{name}(?:-{name})?"
    item = "(?:" + "|".join([span, *(_any_case(w) for w in words)]) + ")"
    return rf"{item}(?:,{item})*"


_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                "dec")
_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKDAY = r"(?:0*[0-7]|" + "|".join(_any_case(n) for n in _WEEKDAY_NAMES) + ")"
# The numbers in range (leading zeros allowed, as the loader allows them) and a step no
# longer than the field; the loader's other checks (a range that runs backwards, a step
# longer than its range, a day no month has) are beyond a pattern.
_CRON_MINUTE = _cron_field(r"0*[1-5]?[0-9]", r"0*(?:[1-9]|[1-5][0-9])")
_CRON_HOUR = _cron_field(r"0*(?:1?[0-9]|2[0-3])", r"0*(?:[1-9]|1[0-9]|2[0-3])")
_CRON_DAY = _cron_field(r"0*(?:[1-9]|[12][0-9]|3[01])", r"0*(?:[1-9]|[12][0-9]|30)",
                        words=("last",))
_CRON_MONTH = _cron_field(r"0*(?:[1-9]|1[0-2])", r"0*(?:[1-9]|1[01])", names=_MONTH_NAMES)
_CRON_STEP = r"/0*[1-9][0-9]*"
_CRON_WEEKDAY_ITEM = rf"(?:\*|{_WEEKDAY}(?:-{_WEEKDAY})?)(?:{_CRON_STEP})?"
# A single day with a step runs to Saturday, so `7/STEP` (from Sunday again) selects no
# day: a field of nothing else selects none.
_CRON_WEEKDAY = (rf"(?!0*7{_CRON_STEP}(?:,0*7{_CRON_STEP})*\s*$)"
                 rf"{_CRON_WEEKDAY_ITEM}(?:,{_CRON_WEEKDAY_ITEM})*")
# Day of month and day of week may not both be restricted (see cron.py): the look-ahead
# wants one of them to be `*`.
CRON_PATTERN = (rf"^\s*{_CRON_MINUTE}\s+{_CRON_HOUR}\s+(?=\*\s|\S+\s+\S+\s+\*\s*$)"
                rf"{_CRON_DAY}\s+{_CRON_MONTH}\s+{_CRON_WEEKDAY}\s*$")
Cron = Annotated[
    str,
    AfterValidator(check_cron),
    Field(json_schema_extra={
        "pattern": CRON_PATTERN,
        # Editors (yaml-language-server, VS Code) show this instead of the pattern.
        "patternErrorMessage": (
            "not a cron expression: minute (0-59), hour (0-23), day of month (1-31), month "
            "(1-12 or jan-dec), day of week (0-7 or sun-sat), each *, N or N-N with an "
            "optional /STEP, or a list of them; day of month or day of week must be *"),
        "examples": ["0 3 * * *"],
    }),
]
Quantity = Annotated[str, BeforeValidator(_quantity), WithJsonSchema({"anyOf": [
    {"type": "string", "pattern": _QUANTITY.pattern, "maxLength": MAX_QUANTITY_LENGTH},
    {"type": "number"},
]})]
# `check_relative_path` as a pattern (but for the length limits): trimmed, no control character
# or backslash, not absolute, no `..` component.
_RELATIVE_PATH = (r"^(?!\s)(?!.*\s$)(?!/)(?![A-Za-z]:)(?!(?:.*/)?\.\.(?:/|$))"
                  r"[^\\\x00-\x1f]+$")
RelativePath = Annotated[
    str, AfterValidator(check_relative_path), Field(json_schema_extra={"pattern": _RELATIVE_PATH})
]
FileName = Annotated[
    str,
    AfterValidator(_file_name),
    # And not only `.` and `/`: that names the folder itself, not a file in it.
    Field(json_schema_extra={"pattern": r"^(?!(?:\.?/)*\.?$)" + _RELATIVE_PATH[1:]}),
]
GitRef = Annotated[
    str,
    AfterValidator(_git_ref),
    # The same rule without the look-behind, which not every JSON Schema validator reads.
    Field(json_schema_extra={"pattern": r"^(?!-)(?!.*\.\.)(?!.*@\{)[^\s~^:?*\[\\]+$",
                             "maxLength": _MAX_GIT_REF}),
]
GitUrl = Annotated[
    str, AfterValidator(_git_url), Field(json_schema_extra={"pattern": r"^[^-\s]\S*$"})
]
DependencyRef = Annotated[
    str,
    AfterValidator(_depends_on),
    Field(json_schema_extra={"pattern": rf"^({'|'.join(_PREFIXES)})/{_DNS_LABEL.pattern[1:]}"}),
]
# `_label_key` as a pattern: an optional DNS subdomain of at most 253 characters and '/',
# then a name of at most 63.
_LABEL_KEY = (rf"^(?:(?=[^/]{{1,253}}/){_DNS_SUBDOMAIN.pattern[1:-1]}/)?(?=[^/]{{1,63}}$)"
              rf"{_LABEL_NAME.pattern[1:]}")
LabelKey = Annotated[
    str, AfterValidator(_label_key), Field(json_schema_extra={"pattern": _LABEL_KEY})
]
LabelValue = Annotated[str, BeforeValidator(_label_value), WithJsonSchema({"anyOf": [
    {"type": "string", "pattern": _LABEL_VALUE.pattern, "maxLength": 63},
    {"type": "integer", "minimum": 0},  # read as its digits, which may not start with '-'
]})]
SecretKey = Annotated[
    str, AfterValidator(_config_key), Field(json_schema_extra={"pattern": _CONFIG_KEY.pattern})
]
VarName = Annotated[
    str, AfterValidator(_var_name), Field(json_schema_extra={"pattern": _VAR_NAME.pattern})
]
DependencyList = list[DependencyRef]
FiniteJson = Annotated[JsonValue, AfterValidator(_finite)]


TimeZone = Annotated[
    str,
    AfterValidator(check_zone),
    Field(json_schema_extra={"examples": ["Europe/Berlin", "UTC"]}),
]
