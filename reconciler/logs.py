"""Logging: loguru to stderr as JSON lines or human text, with secrets masked everywhere.

Redaction happens twice and at the record level, never at call sites: a patcher masks the
message and bound values of every record (whatever sink receives it), and our sink masks the
final line again, including exception text. Standard `logging` records from libraries
(apscheduler, kubernetes, urllib3) are routed into loguru at WARNING and above.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Literal, TextIO

from loguru import logger

from reconciler.redact import redactor

LogFormat = Literal["text", "json"]

LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
# JSON keys the sink writes itself; bound values with these names are nested under "extra".
_RESERVED = frozenset(
    {"time", "level", "message", "logger", "function", "line", "exception", "extra"}
)


def parse_level(level: str) -> str:
    """`info` → `INFO`; raises ValueError naming the accepted levels."""
    name = level.strip().upper()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: expected one of {', '.join(LEVELS)}")
    return name


def _scrub(value: Any) -> Any:
    """A JSON-ready copy of a bound value with every string masked. Objects are stringified
    (pydantic's SecretStr prints as ****), so nothing reaches the output unredacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {redactor(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return redactor(str(value))


def _redact_record(record: Any) -> None:
    record["message"] = redactor(record["message"])
    record["extra"] = {k: _scrub(v) for k, v in record["extra"].items()}


def _exception_text(record: Mapping[str, Any]) -> str:
    # Formatted with the standard library, not loguru's `diagnose`, which would print the
    # values of local variables (passwords included) into the traceback.
    exc = record["exception"]
    if exc is None or exc.type is None:
        return ""
    return "".join(traceback.format_exception(exc.type, exc.value, exc.traceback)).rstrip()


class _Sink:
    """Formats and writes one record per line. The stream is looked up per write when none is
    given, so a replaced `sys.stderr` (a test's capture, a reopened pipe) is honoured."""

    def __init__(self, fmt: LogFormat, stream: TextIO | None) -> None:
        self._format = fmt
        self._stream = stream

    def __call__(self, message: Any) -> None:
        record = message.record
        line = self._json(record) if self._format == "json" else self._text(record)
        out = self._stream if self._stream is not None else sys.stderr
        out.write(line + "\n")
        out.flush()

    @staticmethod
    def _json(record: Mapping[str, Any]) -> str:
        doc: dict[str, Any] = {
            "time": record["time"].astimezone(UTC).isoformat(timespec="milliseconds"),
            "level": record["level"].name,
            "message": redactor(record["message"]),
            "logger": record["name"],
            "function": record["function"],
            "line": record["line"],
        }
        extra = {k: _scrub(v) for k, v in record["extra"].items()}
        clashing = {k: extra.pop(k) for k in list(extra) if k in _RESERVED}
        doc.update(extra)
        if clashing:
            doc["extra"] = clashing
        exception = _exception_text(record)
        if exception:
            doc["exception"] = redactor(exception)
        # Masked before serialising, so a masked value reads `****` and not its escaped form;
        # and after, for what `default=str` made of an object (the JSON-escaped forms of a
        # secret are masked too, and the quotes around them stay: the line is still JSON).
        return redactor(json.dumps(doc, ensure_ascii=False, default=str))

    @staticmethod
    def _text(record: Mapping[str, Any]) -> str:
        when = record["time"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        context = " ".join(f"{k}={v}" for k, v in record["extra"].items())
        line = f"{when} {record['level'].name:<8} {record['name']}: {record['message']}"
        if context:
            line += f"  [{context}]"
        exception = _exception_text(record)
        if exception:
            line += "\n" + exception
        return redactor(line)


class _InterceptHandler(logging.Handler):
    """Hands standard `logging` records to loguru, keeping the library's logger name and
    call site."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        exc_info = record.exc_info if record.exc_info and record.exc_info[0] else None

        def origin(r: Any) -> None:
            r.update(name=record.name, function=record.funcName, line=record.lineno)

        # The message is passed as an argument, not as the format string: a library's text
        # holding braces must not be formatted a second time.
        logger.patch(origin).opt(exception=exc_info).log(level, "{}", text)


def setup_logging(
    format: LogFormat = "text",
    level: str = "INFO",
    *,
    stream: TextIO | None = None,
) -> None:
    """Replace every loguru handler with one writing `format` lines at `level` and above to
    `stream` (default: stderr), and route standard `logging` there at WARNING and above.

    Calling it again reconfigures; it is safe to call from tests."""
    if format not in ("text", "json"):
        raise ValueError(f"unknown log format {format!r}: expected text or json")
    name = parse_level(level)
    logger.remove()
    logger.configure(patcher=_redact_record)
    logger.add(
        _Sink(format, stream),
        level=name,
        format="{message}",
        colorize=False,
        backtrace=False,
        diagnose=False,
        catch=True,
    )
    stdlib_level = max(logging.WARNING, logger.level(name).no)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _InterceptHandler)]:
        root.removeHandler(handler)
    intercept = _InterceptHandler(level=stdlib_level)
    root.addHandler(intercept)
    root.setLevel(stdlib_level)
