"""Logging: JSON lines or text, secrets masked whatever path a message takes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from loguru import logger
from pydantic import SecretStr

from reconciler.logs import parse_level
from reconciler.redact import MASK, redactor
from tests.support.logcapture import Configure

CANARY = "canary-secret-0b7d41e2"


@pytest.fixture(autouse=True)
def _register_canary() -> None:
    redactor.add(CANARY)


def emit_everywhere() -> None:
    logger.bind(entry="task/report", token=f"Bearer {CANARY}", nested={"pw": [CANARY]}).info(
        "cloning with password {}", CANARY
    )
    logging.getLogger("urllib3.connectionpool").warning("retrying https://u:%s@host/", CANARY)
    try:
        raise RuntimeError(f"authentication failed for {CANARY}")
    except RuntimeError:
        logger.exception("fetch failed")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_canary_secret_is_masked_on_every_path(log_output: Configure, fmt: str) -> None:
    buffer = log_output(fmt, "INFO")
    emit_everywhere()
    text = buffer.getvalue()
    assert CANARY not in text
    assert text.count(MASK) >= 5
    assert "cloning with password ****" in text
    assert "retrying https://u:****@host/" in text
    assert "RuntimeError: authentication failed for ****" in text


def test_json_lines_parse_and_carry_bound_context(log_output: Configure) -> None:
    buffer = log_output("json", "INFO")
    emit_everywhere()
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["level"] for line in lines] == ["INFO", "WARNING", "ERROR"]
    first, library, failure = lines
    assert first["message"] == "cloning with password ****"
    assert first["entry"] == "task/report"
    assert first["token"] == "Bearer ****"
    assert first["nested"] == {"pw": ["****"]}
    assert first["time"].endswith("+00:00")
    assert library["logger"] == "urllib3.connectionpool"
    assert "RuntimeError" in failure["exception"]


def test_bound_names_that_clash_with_json_keys_are_kept_apart(log_output: Configure) -> None:
    buffer = log_output("json", "INFO")
    logger.bind(level="mine", run="r-1").info("hello")
    line = json.loads(buffer.getvalue())
    assert (line["level"], line["run"], line["extra"]) == ("INFO", "r-1", {"level": "mine"})


def test_text_lines_show_level_origin_and_context(log_output: Configure) -> None:
    buffer = log_output("text", "INFO")
    logger.bind(entry="stack/net", commit="abc123").warning("plan found {n} changes", n=2)
    line = buffer.getvalue().strip()
    assert "WARNING" in line
    assert "plan found 2 changes" in line
    assert "entry=stack/net" in line
    assert "commit=abc123" in line


def test_secret_str_values_print_masked(log_output: Configure) -> None:
    buffer = log_output("json", "INFO")
    logger.bind(password=SecretStr("not-registered-anywhere")).info("login")
    assert "not-registered-anywhere" not in buffer.getvalue()


def test_levels_filter_loguru_and_stdlib(log_output: Configure) -> None:
    buffer = log_output("json", "WARNING")
    logger.info("quiet")
    logging.getLogger("apscheduler.scheduler").info("also quiet")
    logging.getLogger("apscheduler.scheduler").error("loud %s", "job")
    logger.warning("loud")
    assert [json.loads(x)["message"] for x in buffer.getvalue().splitlines()] == [
        "loud job", "loud"]


def test_library_debug_stays_out_even_at_debug_level(log_output: Configure) -> None:
    buffer = log_output("text", "DEBUG")
    logging.getLogger("kubernetes.client.rest").debug("response body: %s", "{...}")
    logger.debug("ours")
    assert "response body" not in buffer.getvalue()
    assert "ours" in buffer.getvalue()


def test_library_text_with_braces_is_not_formatted_again(log_output: Configure) -> None:
    buffer = log_output("json", "INFO")
    logging.getLogger("lib").warning("template {name} %s", "{0}")
    assert json.loads(buffer.getvalue())["message"] == "template {name} {0}"


def test_bad_level_and_format_are_clear_errors(log_output: Configure) -> None:
    assert parse_level("warn") == "WARNING"
    assert parse_level(" debug ") == "DEBUG"
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        log_output("json", "LOUD")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        log_output("xml", "INFO")


def test_the_default_stream_is_stderr_in_a_real_process() -> None:
    program = (
        "import logging\n"
        "from loguru import logger\n"
        "from reconciler.logs import setup_logging\n"
        "from reconciler.redact import redactor\n"
        f"redactor.add({CANARY!r})\n"
        "setup_logging('json', 'INFO')\n"
        f"logger.bind(run='r-1').info('token {CANARY}')\n"
        f"logging.getLogger('urllib3').error('token {CANARY}')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=30, check=True, env={**os.environ, "NO_COLOR": "1"})
    assert done.stdout == ""
    lines = [json.loads(x) for x in done.stderr.splitlines()]
    assert [(x["message"], x.get("run")) for x in lines] == [
        ("token ****", "r-1"), ("token ****", None)]
