"""The daemon's logging set up into a buffer for one test, and put back afterwards: loguru's
sinks and the standard library's root logger are process-wide, and the next test run by the
same worker must not write into this test's buffer."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator

import pytest
from loguru import logger

from reconciler.logs import setup_logging

Configure = Callable[[str, str], io.StringIO]


@pytest.fixture
def log_output() -> Iterator[Configure]:
    """`log_output(format, level)` sets logging up into a new buffer and returns it."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    def configure(fmt: str, level_name: str = "DEBUG") -> io.StringIO:
        buffer = io.StringIO()
        setup_logging(fmt, level_name, stream=buffer)  # type: ignore[arg-type]
        return buffer

    yield configure
    logger.remove()
    logger.add(sys.stderr)
    root.handlers[:] = handlers
    root.setLevel(level)
