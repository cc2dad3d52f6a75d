"""The daemon's own log lines mask a registered secret in the forms a library or an engine
prints it in, and stay valid JSON lines."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import pytest
from loguru import logger

from reconciler.redact import MASK, redactor
from tests.support.logcapture import Configure

SECRET = 'daemon"ZQX\\WVK/log-secret'


@pytest.fixture
def buffer(request: pytest.FixtureRequest, log_output: Configure) -> io.StringIO:
    out = log_output(request.param, "INFO")
    redactor.add(SECRET)
    return out


@pytest.mark.parametrize("buffer", ["json", "text"], indirect=True)
def test_escaped_and_encoded_forms_are_masked_in_log_lines(buffer: io.StringIO) -> None:
    escaped = SECRET.replace("\\", "\\\\").replace('"', '\\"')
    logger.bind(body=json.dumps({"token": SECRET})).info('engine: input = "{}"', escaped)
    logging.getLogger("urllib3.connectionpool").warning("GET /?token=%s", quote(SECRET, safe=""))

    text = buffer.getvalue()
    assert "ZQX" not in text
    assert "WVK" not in text
    assert f'input = "{MASK}"' in text.replace('\\"', '"')


@pytest.mark.parametrize("buffer", ["json"], indirect=True)
def test_json_lines_stay_json(buffer: io.StringIO) -> None:
    logger.bind(body=json.dumps({"token": SECRET})).info("sent {}", json.dumps(SECRET))

    line = json.loads(buffer.getvalue())
    assert line["message"] == f'sent "{MASK}"'
    assert json.loads(line["body"]) == {"token": MASK}
