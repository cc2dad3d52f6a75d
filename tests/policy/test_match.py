"""Prefixes and globs compared the way an attacker would try to get around them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from reconciler.commands.policyflags import daemon_identity, token_account
from reconciler.policy.match import (
    glob_matches,
    image_allowed,
    parse_image_prefix,
    parse_repository,
    quantity,
    repository_allowed,
)

REGISTRY = "registry.example.io/"


@pytest.mark.parametrize(("image", "allowed"), [
    ("registry.example.io/app:1", True),
    ("registry.example.io/team/app@sha256:" + "a" * 64, True),
    ("REGISTRY.EXAMPLE.IO/app:1", True),  # host names are not case-sensitive
    ("registry.example.io.evil.com/app:1", False),
    ("registry.example.io:5000/app:1", False),
    ("registry.example.io./app:1", False),
    ("registry.example.io@evil.com/app", False),
    ("evil.com/registry.example.io/app", False),
    ("registry.example.io/../evil/app", False),
    ("registry.example.io/Team/app", False),  # not a valid reference
    ("registry.example.io/app\n", False),
    ("reg\u0456stry.example.io/app", False),  # a Cyrillic letter
    ("app", False),  # Docker Hub's library/app
    ("", False),
])
def test_image_prefix_is_a_registry_not_a_string(image: str, allowed: bool) -> None:
    prefix = parse_image_prefix(REGISTRY)
    assert prefix is not None
    assert image_allowed(image, [prefix]) is allowed


@pytest.mark.parametrize(("prefix", "image", "allowed"), [
    ("registry.example.io/team/", "registry.example.io/team/app:1", True),
    ("registry.example.io/team", "registry.example.io/team/app:1", True),
    ("registry.example.io/team/", "registry.example.io/team-evil/app:1", False),
    ("registry.example.io/team/", "registry.example.io/teamx:1", False),
    ("python", "python:3.12", True),
    ("python", "docker.io/library/python:3.12", True),
    ("python", "index.docker.io/library/python", True),
    ("python", "pythonista/python:1", False),
    ("python:3.12", "python:3.12", True),
    ("python:3.12", "python:3.13", False),
    ("python:3.12", "python:3.12-evil", False),
    ("localhost:5000", "localhost:5000/app", True),
    ("localhost:5000", "localhost:5001/app", False),
])
def test_image_prefix_forms(prefix: str, image: str, allowed: bool) -> None:
    parsed = parse_image_prefix(prefix)
    assert parsed is not None
    assert image_allowed(image, [parsed]) is allowed


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://git.example.io/org/app.git", True),
    ("https://git.example.io/org/app", True),
    ("https://git.example.io:443/org/app", True),
    ("https://GIT.example.io/org/app", True),
    ("https://ci@git.example.io/org/app", True),
    ("https://git.example.io/org//app", True),
    ("https://git.example.io/%6Frg/app", True),  # an encoded letter is the letter
    ("https://git.example.io.evil.com/org/app", False),
    ("https://git.example.io@evil.com/org/app", False),
    ("https://git.example.io:x@evil.com/org/app", False),
    ("https://a@git.example.io@evil.com/org/app", False),
    ("https://git.example.io\\@evil.com/org/app", False),
    ("https://git.example.io/org/../evil/app", False),
    ("https://git.example.io/org/./app", False),
    ("https://git.example.io/org/%2e%2e/evil", False),
    ("https://git.example.io/org/%2E%2E/evil", False),
    ("https://git.example.io/org%2f..%2fevil", False),
    ("https://git.example.io/org/%252e%252e/evil", False),  # double encoding
    ("https://git.example.io/org/%00/app", False),
    ("https://git.example.io/org-evil/app", False),
    ("https://git.example.io/organisation/app", False),
    ("https://git.example.io/app", False),
    ("https://git.example.io", False),
    ("http://git.example.io/org/app", False),
    ("git://git.example.io/org/app", False),
    ("https://git.example.io:8443/org/app", False),
    ("https://user:token@git.example.io/org/app", False),  # a password is never compared
    ("https://git.example.io/org/app?x=../../evil", False),
    ("https://git.example.io/org/app#frag", False),
    ("https://g\u0456t.example.io/org/app", False),  # a Cyrillic letter
    ("https://git.example.io./org/app", False),
    ("https://git.example.io /org/app", False),
    ("git@git.example.io:org/app.git", False),  # ssh is another scheme
    ("ext::sh -c touch% /tmp/pwned", False),
    ("-uhttps://git.example.io/org/app", False),
    ("", False),
])
def test_repository_prefix_compares_scheme_host_port_and_segments(url: str, allowed: bool) -> None:
    prefix = parse_repository("https://git.example.io/org/")
    assert prefix is not None
    assert repository_allowed(url, [prefix]) is allowed


@pytest.mark.parametrize(("prefix", "url", "allowed"), [
    ("git@git.example.io:org/", "git@git.example.io:org/app.git", True),
    ("git@git.example.io:org/", "ssh://git@git.example.io/org/app.git", True),
    ("git@git.example.io:org/", "ssh://git@git.example.io:22/org/app", True),
    ("git@git.example.io:org/", "ssh://deploy@git.example.io/org/app", False),
    ("git@git.example.io:org/", "ssh://git@git.example.io:2222/org/app", False),
    ("ssh://git.example.io/org", "ssh://-oProxyCommand=evil/org/app", False),
    ("https://git.example.io/org/app.git", "https://git.example.io/org/app", True),
    ("https://git.example.io/org/app.git", "https://git.example.io/org/app-evil", False),
    ("file:///srv/git/", "/srv/git/app.git", True),
    ("file:///srv/git/", "/srv/gitevil/app.git", False),
    ("https://[::1]:8443/", "https://[::1]:8443/app", True),
])
def test_repository_prefix_forms(prefix: str, url: str, allowed: bool) -> None:
    parsed = parse_repository(prefix)
    assert parsed is not None
    assert repository_allowed(url, [parsed]) is allowed


@pytest.mark.parametrize(("pattern", "value", "matches"), [
    ("app-*", "app-token", True),
    ("app-*", "app-", True),
    ("app-*", "xapp-token", False),
    ("*", "anything", True),
    ("data-*-eu", "data-x-eu", True),
    ("data-*-eu", "data-x-us", False),
    ("a.b", "axb", False),  # '.' is no wildcard
    ("runs", "runs2", False),
])
def test_globs_have_one_wildcard(pattern: str, value: str, matches: bool) -> None:
    assert glob_matches(pattern, value) is matches


def test_quantities() -> None:
    assert quantity("100m") == quantity("0.1")
    assert quantity("1Gi") == 1024 ** 3
    assert quantity("1G") == 10 ** 9
    assert quantity("1e3") == 1000
    assert quantity("4") == quantity("4000m")
    assert quantity("lots") is None


def _token(claims: dict[str, str]) -> str:
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_the_pods_own_account_is_reserved(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(_token({"sub": "system:serviceaccount:ops:gitops-daemon"}))
    assert token_account(token) == "gitops-daemon"
    identity = daemon_identity(executor="kubernetes", namespace="ops",
                               service_account="reconciler", token_file=token)
    assert identity.service_accounts == {"reconciler", "gitops-daemon", "reconciler-stack-*"}
    token.write_text("not a token")
    assert token_account(token) is None
    assert token_account(tmp_path / "absent") is None
