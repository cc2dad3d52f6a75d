from __future__ import annotations

from collections.abc import Iterator

import pygit2
import pytest
from loguru import logger


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every loguru record (any level) emitted during the test, formatted with its values."""
    lines: list[str] = []
    sink = logger.add(
        lambda message: lines.append(str(message) + repr(message.record["extra"])),
        level="TRACE",
        format="{level} {message}",
    )
    try:
        yield lines
    finally:
        logger.remove(sink)


@pytest.fixture(autouse=True)
def _restore_libgit2_timeouts() -> Iterator[None]:
    """GitRemote sets libgit2's process-wide timeouts; a test's short one must not leak into
    the next test run by the same worker."""
    saved = (pygit2.settings.server_connect_timeout, pygit2.settings.server_timeout)
    yield
    pygit2.settings.server_connect_timeout, pygit2.settings.server_timeout = saved
