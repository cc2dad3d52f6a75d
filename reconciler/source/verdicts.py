"""The values commit verification works with, shared by the SSH and GPG verifiers."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.metrics import CommitVerificationResult
from reconciler.types import Revision


class SignatureConfigError(ValueError):
    """A trust file that cannot be used (missing, malformed, no keys) or a missing verifier."""


@dataclass(frozen=True)
class SignedCommit:
    """What verification needs of one commit, as the Git source reads it."""

    id: Revision
    signature: bytes | None
    """The `gpgsig` header (SSH or OpenPGP armor), or None when the commit is unsigned."""
    payload: bytes
    """What the signature signs: the commit object without its `gpgsig` header."""
    committer_email: str
    first_parent: Revision | None


@dataclass(frozen=True)
class Verdict:
    result: CommitVerificationResult
    reason: str
    """One line: who signed, or why the commit is refused."""
    signer: str | None = None

    @property
    def verified(self) -> bool:
        return self.result == "verified"


UNSIGNED = Verdict("unsigned", "the commit is not signed")
