"""Remote URLs: every form Git accepts, and no credential in what is shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.source.errors import InvalidRemoteURLError
from reconciler.source.urls import parse_remote_url, redact_url


@pytest.mark.parametrize(
    ("raw", "scheme", "url", "host", "port", "known_hosts_name"),
    [
        ("https://example.com/org/repo.git", "https", "https://example.com/org/repo.git",
         "example.com", 443, ""),
        ("https://bob:tok@example.com:8443/r.git", "https", "https://example.com:8443/r.git",
         "example.com", 8443, ""),
        ("git://127.0.0.1:9418/r.git", "git", "git://127.0.0.1:9418/r.git", "127.0.0.1", 9418,
         ""),
        ("ssh://git@example.com/org/r.git", "ssh", "ssh://git@example.com/org/r.git",
         "example.com", 22, "example.com"),
        ("ssh://git@[::1]:2222/r.git", "ssh", "ssh://git@[::1]:2222/r.git", "::1", 2222,
         "[::1]:2222"),
        ("git+ssh://example.com/r.git", "ssh", "ssh://example.com/r.git", "example.com", 22,
         "example.com"),
        ("git@github.com:org/repo.git", "ssh", "git@github.com:org/repo.git", "github.com", 22,
         "github.com"),
        ("file:///srv/repo.git", "file", "file:///srv/repo.git", None, None, ""),
        ("/srv/repo.git", "file", "/srv/repo.git", None, None, ""),
    ],
)
def test_parse(
    raw: str, scheme: str, url: str, host: str | None, port: int | None, known_hosts_name: str
) -> None:
    parsed = parse_remote_url(raw)
    assert (parsed.scheme, parsed.url, parsed.host, parsed.port) == (scheme, url, host, port)
    if scheme == "ssh":
        assert parsed.known_hosts_name == known_hosts_name
    assert "tok" not in parsed.display
    assert "tok" not in repr(parsed)


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_remote_url("./repo.git").url == str(tmp_path / "repo.git")


def test_credentials_in_a_url_are_kept_for_authentication_only() -> None:
    parsed = parse_remote_url("https://bob:s%40cret@example.com/r.git")
    assert (parsed.username, parsed.password) == ("bob", "s@cret")
    assert parsed.display == "https://example.com/r.git"


def test_a_password_in_an_ssh_url_is_refused() -> None:
    with pytest.raises(InvalidRemoteURLError, match="no password in an ssh URL") as caught:
        parse_remote_url("ssh://git:hunter22@example.com/r.git")
    assert "hunter22" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("failed https://user:pw@host/x and http://tok@h/y",
         "failed https://host/x and http://h/y"),
        ("ssh://git@host/x", "ssh://git@host/x"),
        ("ssh://git:pw@host/x", "ssh://host/x"),
        ("no url here", "no url here"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected
