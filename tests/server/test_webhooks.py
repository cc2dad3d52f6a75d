"""POST /hooks/git: only requests that prove they know the secret trigger a cycle."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import urllib.parse
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import Running, StartServer

SECRET = "wh-secret-7f3c9e1a"
PUSH = json.dumps(
    {"ref": "refs/heads/main", "after": "9fceb02d0ae598e95dc970b74767f19372d61af8"}
).encode()


def hex_hmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(body: bytes, secret: str = SECRET, event: str = "push") -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": "d-1",
            "X-Hub-Signature-256": "sha256=" + hex_hmac(body, secret),
            "Content-Type": "application/json"}


def gitlab(body: bytes, secret: str = SECRET, event: str = "Push Hook") -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": secret, "Content-Type": "application/json"}


def gitea(body: bytes, secret: str = SECRET, event: str = "push") -> dict[str, str]:
    return {"X-Gitea-Event": event, "X-Gitea-Signature": hex_hmac(body, secret),
            "Content-Type": "application/json"}


PROVIDERS: dict[str, Callable[..., dict[str, str]]] = {
    "github": github, "gitlab": gitlab, "gitea": gitea,
}


@pytest.fixture
def hooks(start_server: StartServer) -> Running:
    return start_server(webhook_secret=SECRET, branches=["main"])


def post(running: Running, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    response = running.call("POST", "/hooks/git", body, headers)
    return response.status, response.text


def webhook_counts(running: Running) -> dict[tuple[str, str], float]:
    text = running.get("/metrics").text
    family = next(f for f in text_string_to_metric_families(text)
                  if f.name == "reconciler_webhook_requests")
    return {(s.labels["provider"], s.labels["result"]): s.value for s in family.samples
            if s.name.endswith("_total")}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_valid_push_triggers_a_cycle_within_a_second(hooks: Running, provider: str) -> None:
    status, text = post(hooks, PUSH, PROVIDERS[provider](PUSH))
    assert status == 202, text
    assert hooks.triggers.wait(1.0)
    assert hooks.triggers.reasons == [f"webhook: {provider} push to refs/heads/main (9fceb02d0ae5)"]
    assert webhook_counts(hooks)[(provider, "accepted")] == 1


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_wrong_secret_is_401_and_triggers_nothing(hooks: Running, provider: str) -> None:
    status, _ = post(hooks, PUSH, PROVIDERS[provider](PUSH, secret="not-the-secret"))
    assert status == 401
    assert not hooks.triggers.reasons
    assert webhook_counts(hooks)[(provider, "unauthorized")] == 1


def test_a_signature_of_another_body_is_401(hooks: Running) -> None:
    headers = github(b'{"ref": "refs/heads/other"}')
    assert post(hooks, PUSH, headers)[0] == 401
    assert not hooks.triggers.reasons


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-GitHub-Event": "push"},
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256="},
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha1=" + hex_hmac(PUSH)},
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": hex_hmac(PUSH)},
        {"X-GitHub-Event": "push",
         "X-Hub-Signature": "sha1=" + hmac.new(SECRET.encode(), PUSH, "sha1").hexdigest()},
        {"X-Gitlab-Event": "Push Hook"},
        {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET + "x"},
        {"X-Gitea-Event": "push", "X-Gitea-Signature": "zz" * 32},
    ],
    ids=["nothing", "no-signature", "empty", "sha1-prefix", "no-prefix", "legacy-sha1",
         "gitlab-no-token", "gitlab-longer-token", "gitea-garbage"],
)
def test_missing_or_malformed_proof_is_401(hooks: Running, headers: dict[str, str]) -> None:
    status, text = post(hooks, PUSH, headers)
    assert status == 401
    assert text.startswith("unauthorized")
    assert not hooks.triggers.reasons


def test_gitea_with_one_good_and_one_bad_signature_is_refused(hooks: Running) -> None:
    headers = {**gitea(PUSH), "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert post(hooks, PUSH, headers)[0] == 401
    both = {**gitea(PUSH), "X-Hub-Signature-256": "sha256=" + hex_hmac(PUSH)}
    assert post(hooks, PUSH, both)[0] == 202


def test_without_a_secret_webhooks_are_disabled(start_server: StartServer) -> None:
    running = start_server()
    status, text = post(running, PUSH, github(PUSH))
    assert status == 403
    assert "webhooks are disabled" in text
    assert not running.triggers.reasons
    assert webhook_counts(running)[("github", "disabled")] == 1


@pytest.mark.parametrize(
    ("provider", "event"),
    [("github", "ping"), ("github", "issues"), ("gitea", "issues"),
     ("gitlab", "Merge Request Hook"), ("gitlab", "Tag Push Hook")],
)
def test_other_events_with_a_valid_proof_are_ignored(
    hooks: Running, provider: str, event: str
) -> None:
    status, text = post(hooks, PUSH, PROVIDERS[provider](PUSH, event=event))
    assert status == 200
    assert text.startswith("ignored")
    assert not hooks.triggers.reasons


def test_a_push_to_another_branch_is_ignored(hooks: Running) -> None:
    body = json.dumps({"ref": "refs/heads/reconciler-status"}).encode()
    status, text = post(hooks, body, github(body))
    assert (status, text) == (200, "ignored: push to refs/heads/reconciler-status\n")
    assert not hooks.triggers.reasons


def test_a_gitlab_system_hook_push_triggers(hooks: Running) -> None:
    body = json.dumps({"event_name": "push", "ref": "refs/heads/main"}).encode()
    assert post(hooks, body, gitlab(body, event="System Hook"))[0] == 202
    assert hooks.triggers.wait(1.0)


def test_a_form_encoded_github_push_is_understood(hooks: Running) -> None:
    other = urllib.parse.urlencode({"payload": '{"ref": "refs/heads/feature"}'}).encode()
    headers = {**github(other), "Content-Type": "application/x-www-form-urlencoded"}
    assert post(hooks, other, headers) == (200, "ignored: push to refs/heads/feature\n")
    main = urllib.parse.urlencode({"payload": PUSH.decode()}).encode()
    headers = {**github(main), "Content-Type": "application/x-www-form-urlencoded"}
    assert post(hooks, main, headers)[0] == 202


def test_a_signed_push_without_a_readable_ref_still_triggers(hooks: Running) -> None:
    body = b"not json"
    assert post(hooks, body, github(body)) == (202, "accepted: push; a cycle is queued\n")


def test_an_oversized_body_is_413_and_never_read(start_server: StartServer) -> None:
    running = start_server(webhook_secret=SECRET, max_body_bytes=1024)
    body = b"{" + b" " * 2048 + b"}"
    status, _ = post(running, body, github(body))
    assert status == 413
    assert not running.triggers.reasons
    assert webhook_counts(running)[("github", "invalid")] == 1


def test_a_failing_trigger_is_500_and_the_server_keeps_serving(
    start_server: StartServer,
) -> None:
    def refuse(reason: str) -> None:
        raise RuntimeError("queue closed")

    running = start_server(webhook_secret=SECRET, on_trigger=refuse)
    assert post(running, PUSH, github(PUSH))[0] == 500
    assert running.get("/healthz").status == 200


def test_secret_and_signatures_never_reach_the_logs(
    hooks: Running, log_output: Callable[[str, str], object]
) -> None:
    buffer = log_output("json", "DEBUG")
    wrong = github(PUSH, secret="wrong-secret-value")
    post(hooks, PUSH, wrong)
    good = github(PUSH)
    post(hooks, PUSH, good)
    post(hooks, PUSH, gitlab(PUSH))
    text = buffer.getvalue()  # type: ignore[attr-defined]
    assert "webhook refused" in text
    assert "webhook accepted" in text
    for value in (SECRET, good["X-Hub-Signature-256"][7:], wrong["X-Hub-Signature-256"][7:]):
        assert value not in text


def raw_exchange(running: Running, data: bytes) -> bytes:
    host, port = running.server.address
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: conn.recv(65536), b""))


def test_a_body_without_a_length_is_411_and_a_short_body_400(hooks: Running) -> None:
    headers = "".join(f"{k}: {v}\r\n" for k, v in github(PUSH).items())
    no_length = f"POST /hooks/git HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + PUSH
    assert raw_exchange(hooks, no_length).startswith(b"HTTP/1.0 411")
    short = (f"POST /hooks/git HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(PUSH) + 10}"
             "\r\n\r\n").encode() + PUSH
    assert raw_exchange(hooks, short).startswith(b"HTTP/1.0 400")
    assert not hooks.triggers.reasons


def test_forgejo_signatures_are_accepted(hooks: Running) -> None:
    headers = {"X-Forgejo-Event": "push", "X-Forgejo-Signature": hex_hmac(PUSH)}
    assert post(hooks, PUSH, headers)[0] == 202


def test_a_non_ascii_gitlab_token_compares_by_its_bytes(start_server: StartServer) -> None:
    secret = "clé-secrète-42"
    running = start_server(webhook_secret=secret)
    host, port = running.server.address
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nX-Gitlab-Event: Push Hook\r\n"
                     b"X-Gitlab-Token: " + secret.encode() + b"\r\nContent-Length: 2\r\n\r\n{}")
        conn.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.0 202"), answer
