"""Webhook verification for `POST /hooks/git` (DESIGN §4): which forge sent a request, whether
it proves it knows the shared secret, and whether it asks for a cycle. Pure: the HTTP server
(`reconciler.http.server`) reads the request and answers it.

A request that does not prove it knows the secret is refused:

- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
- Gitea, Forgejo, Gogs: `X-Gitea-Signature` (or `X-Forgejo-Signature`, `X-Gogs-Signature`),
  the bare hex HMAC-SHA256; recent versions add `X-Hub-Signature-256` too. Every signature
  present must match.
- GitLab: `X-Gitlab-Token` equal to the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection
from email.message import Message
from typing import Any
from urllib.parse import parse_qs

from reconciler.metrics import WebhookProvider

_GITEA_SIGNATURES = ("X-Gitea-Signature", "X-Forgejo-Signature", "X-Gogs-Signature")
_GITEA_EVENTS = ("X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event")


def identify(headers: Message) -> WebhookProvider:
    """Which forge sent a request, by its event header first (Gitea also sends GitHub's),
    then by its signature header."""
    if headers.get("X-Gitlab-Event") or headers.get("X-Gitlab-Token"):
        return "gitlab"
    if any(headers.get(h) for h in (*_GITEA_EVENTS, *_GITEA_SIGNATURES)):
        return "gitea"
    if headers.get("X-GitHub-Event") or headers.get("X-Hub-Signature-256"):
        return "github"
    return "unknown"


def authenticate(provider: WebhookProvider, headers: Message, body: bytes, secret: bytes) -> str:
    """'' when the request proves it knows `secret`, else why not (safe to return to the
    caller: it never contains the secret or the signatures)."""
    if provider == "gitlab":
        # http.server decodes header bytes as Latin-1; encoding back gives the bytes sent.
        token = headers.get("X-Gitlab-Token", "").encode("latin-1", "replace")
        ok = hmac.compare_digest(token, secret)
        return "" if ok else "X-Gitlab-Token does not match the webhook secret"
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    given: list[str] = []
    hub = headers.get("X-Hub-Signature-256")
    if hub is not None:
        algorithm, _, digest = hub.strip().partition("=")
        given.append(digest if algorithm.lower() == "sha256" else "")
    given += [headers.get(h, "").strip() for h in _GITEA_SIGNATURES if headers.get(h) is not None]
    if not given:
        if headers.get("X-Hub-Signature"):
            return "X-Hub-Signature (SHA-1) is not accepted; send X-Hub-Signature-256"
        return "no signature: expected X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token"
    # Every digest is compared (no early exit), so timing says nothing about which failed.
    results = [hmac.compare_digest(d.lower().encode("ascii", "replace"), expected.encode())
               for d in given]
    return "" if all(results) else "signature does not match the webhook secret"


def _payload(headers: Message, body: bytes) -> dict[str, Any]:
    try:
        if headers.get_content_type() == "application/x-www-form-urlencoded":
            text = parse_qs(body.decode("utf-8"))["payload"][0]
        else:
            text = body.decode("utf-8")
        value = json.loads(text)
    except (ValueError, KeyError, IndexError):
        return {}
    return value if isinstance(value, dict) else {}


def clean(text: object, limit: int = 200) -> str:
    """Untrusted text made safe for a log line: printable, bounded."""
    return "".join(c if c.isprintable() else "?" for c in str(text))[:limit]


def classify(
    provider: WebhookProvider, headers: Message, body: bytes, refs: Collection[str]
) -> tuple[bool, str]:
    """(trigger a cycle?, what the request was). Only pushes to a watched ref trigger; a push
    whose ref cannot be read triggers too, since an extra cycle is cheap and harmless."""
    if provider == "gitlab":
        event = headers.get("X-Gitlab-Event", "")
        payload = _payload(headers, body)
        # System hooks carry the event in the body.
        kind = payload.get("event_name") or payload.get("object_kind") or ""
        push = event == "Push Hook" or (event == "System Hook" and kind == "push")
    else:
        names = (*_GITEA_EVENTS, "X-GitHub-Event")
        event = next((headers[h] for h in names if headers.get(h)), "")
        if event.strip().lower() == "ping":
            return False, "ping"
        push = event.strip().lower() in ("push", "")
        payload = _payload(headers, body) if push else {}
    if not push:
        return False, f"{clean(event, 60) or 'unknown'} event"
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref:
        return True, "push"
    if refs and ref not in refs:
        return False, f"push to {clean(ref)}"
    after = payload.get("after") or payload.get("checkout_sha")
    commit = f" ({clean(after, 12)})" if isinstance(after, str) and after else ""
    return True, f"push to {clean(ref)}{commit}"


def delivery(headers: Message) -> str:
    """The forge's id of one delivery, for matching a log line with the forge's own log."""
    return clean(headers.get("X-GitHub-Delivery") or headers.get("X-Gitea-Delivery")
                 or headers.get("X-Gitlab-Event-UUID") or "-", 64)
