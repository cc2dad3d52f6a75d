"""What a user sees when the remote is misconfigured or down: one clear line, the right group
(retry later or fix the configuration), and never a credential."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.redact import Redactor
from reconciler.settings import GitCredentials
from reconciler.source.errors import (
    AuthenticationError,
    InvalidRemoteURLError,
    RemoteNotFoundError,
    RemoteUnreachableError,
    SourceConfigurationError,
    SourceError,
)
from reconciler.source.remote import GitRemote
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.githttp import GitHTTPServer
from tests.support.gitservers import GitDaemon

CANARY = "canary-Pa55w0rd-7c1e"


def assert_one_clean_line(error: BaseException, *secrets: str) -> None:
    text = str(error)
    assert text
    assert "\n" not in text
    for secret in secrets:
        assert secret not in text
        assert secret not in repr(error)
    assert error.__cause__ is None or not any(s in str(error.__cause__) for s in secrets)


def test_wrong_password_is_an_authentication_error_that_never_shows_it(
    git_http: GitHTTPServer, bare_remote: Path, tmp_path: Path, log_lines: list[str]
) -> None:
    creds = GitCredentials(username=HTTP_USER, password=SecretStr(CANARY))
    remote = GitRemote(git_http.url("repo.git"), tmp_path / "state", credentials=creds,
                       redact=Redactor())

    for operation in (remote.remote_heads, lambda: remote.fetch(["main"])):
        with pytest.raises(AuthenticationError) as caught:
            operation()
        assert_one_clean_line(caught.value, CANARY)
        assert "authentication to http://127.0.0.1" in str(caught.value)
        assert not caught.value.retryable

    assert not any(CANARY in line for line in log_lines)
    # One attempt with the wrong password per operation: no retry storm against the server.
    assert sum(r.status == 401 for r in git_http.requests) <= 4


def test_password_in_the_url_is_used_but_never_shown(
    git_http: GitHTTPServer, bare_remote: Path, tmp_path: Path, log_lines: list[str]
) -> None:
    good = GitRemote(git_http.url("repo.git", userinfo=f"{HTTP_USER}:{HTTP_PASSWORD}"),
                     tmp_path / "good", redact=Redactor())
    assert good.url == git_http.url("repo.git")
    assert "main" in good.fetch(["main"])
    assert HTTP_PASSWORD not in repr(good)
    assert HTTP_PASSWORD not in (tmp_path / "good" / "mirror.git" / "config").read_text()

    bad = GitRemote(git_http.url("repo.git", userinfo=f"{HTTP_USER}:{CANARY}"),
                    tmp_path / "bad", redact=Redactor())
    with pytest.raises(AuthenticationError) as caught:
        bad.remote_heads()
    assert_one_clean_line(caught.value, CANARY)
    assert not any(CANARY in line or HTTP_PASSWORD in line for line in log_lines)


def test_missing_credentials_say_which_flags_to_set(
    git_http: GitHTTPServer, bare_remote: Path, tmp_path: Path
) -> None:
    remote = GitRemote(git_http.url("repo.git"), tmp_path / "state")
    with pytest.raises(AuthenticationError, match="--git-password-file"):
        remote.remote_heads()


def test_a_secret_registered_elsewhere_is_masked_in_server_messages(
    git_daemon: GitDaemon, tmp_path: Path
) -> None:
    redact = Redactor([CANARY])
    remote = GitRemote(git_daemon.url(f"{CANARY}.git"), tmp_path / "state", redact=redact)
    with pytest.raises(RemoteNotFoundError) as caught:
        remote.remote_heads()
    # The URL is built by us and shown as configured; the server's echo of it is masked.
    assert "access denied or repository not exported: /****.git" in str(caught.value)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.mark.parametrize(
    ("make_url", "error", "message"),
    [
        (lambda d, p: "git://127.0.0.1:1/repo.git", RemoteUnreachableError, "Connection refused"),
        (lambda d, p: f"git://127.0.0.1:{p}/repo.git", RemoteUnreachableError, "timed out"),
        (lambda d, p: d.url("missing.git"), RemoteNotFoundError, "not exported"),
    ],
    ids=["refused", "timeout", "no-such-repository"],
)
def test_network_failures_are_grouped_by_what_to_do(
    git_daemon: GitDaemon,
    silent_port: int,
    tmp_path: Path,
    make_url: object,
    error: type[SourceError],
    message: str,
) -> None:
    url = make_url(git_daemon, silent_port)  # type: ignore[operator]
    remote = GitRemote(url, tmp_path / "state", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(error, match=message) as caught:
        remote.fetch(["main"])
    assert time.monotonic() - started < 5
    assert_one_clean_line(caught.value)
    assert caught.value.retryable is (error is RemoteUnreachableError)


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("ftp://example.com/repo.git", InvalidRemoteURLError, "unsupported URL scheme 'ftp'"),
        ("https://:443/repo.git", InvalidRemoteURLError, "has no host"),
        ("https://example.com/", InvalidRemoteURLError, "no repository path"),
        ("https://example.com:99999/r.git", InvalidRemoteURLError, "out of range"),
        ("ssh://git@example.com/repo.git", SourceConfigurationError, "known_hosts"),
        ("/nonexistent/repo.git", RemoteNotFoundError, "no repository at /nonexistent"),
        ("file:///nonexistent/repo.git", RemoteNotFoundError, "no repository at /nonexistent"),
    ],
)
def test_configuration_errors_are_raised_before_any_connection(
    url: str, error: type[SourceError], message: str, tmp_path: Path
) -> None:
    with pytest.raises(error, match=message) as caught:
        GitRemote(url, tmp_path / "state")
    assert not caught.value.retryable
    assert_one_clean_line(caught.value)


def test_a_url_password_never_reaches_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRemoteURLError) as caught:
        GitRemote(f"gopher://bob:{CANARY}@example.com/r.git", tmp_path / "state")
    assert_one_clean_line(caught.value, CANARY)
    assert "gopher://example.com/r.git" in str(caught.value)


def test_missing_ssh_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    creds = GitCredentials(ssh_key_file=tmp_path / "nope", known_hosts_file=tmp_path / "kh")
    with pytest.raises(SourceConfigurationError, match=r"SSH key file .*nope does not exist"):
        GitRemote("ssh://git@example.com/r.git", tmp_path / "state", credentials=creds)
