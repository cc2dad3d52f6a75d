"""Commit signature verification (DESIGN §8, `commits.verify`): which commit is in force.

With verification on, only a head signed by an allowed signer is reconciled. The signature of
the head alone is checked (as Argo CD and Flux do): a forge's merge or squash button signs the
commit it makes, not the contributors' commits below it, and the head's tree is all that is
reconciled, so its signer vouches for everything in it.

When the head is refused, the commit in force is the newest verified commit on the head's
first-parent chain, looking back at most `SignatureCheck.search_depth` commits. The rule is a
function of the branch and the trust files alone, so a restart finds the same commit again,
with or without a state dir; while the daemon runs, the commit it had in force is verified
already, so the walk stops there. Nothing verified within reach: a running daemon keeps the
commit it had in force; a starting one has none, and nothing runs or is pruned until a signed
commit arrives.

Trust files are read once, when the gate is made: a change to them takes effect on restart.
Verdicts are kept per commit (an `error` verdict is not kept: the verifier is asked again).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, model_validator

from reconciler.metrics import Metrics
from reconciler.source.gpgsigs import GPGVerifier
from reconciler.source.sshsigs import SSHVerifier
from reconciler.source.verdicts import UNSIGNED, SignatureConfigError, SignedCommit, Verdict
from reconciler.types import Revision

__all__ = ["CommitGate", "Decision", "SignatureCheck", "SignatureConfigError", "SignedCommit",
           "Verdict", "Verifier", "make_verifier"]

_VERDICTS_KEPT = 10_000


class SignatureCheck(BaseModel):
    """How commits are verified: the Policy's `spec.commits` block (`verify`, `allowedSigners`,
    `keyring`) validates into it as it is; Python names work too."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    mode: Literal["none", "ssh", "gpg"] = Field(default="none", alias="verify")
    allowed_signers: Path | None = Field(default=None, alias="allowedSigners")
    """ssh: an `allowed_signers` file as `ssh-keygen -Y verify` reads it."""
    keyring: Path | None = None
    """gpg: the public keys allowed to sign (armored or binary, as `gpg --export` writes)."""
    search_depth: int = Field(default=100, ge=1, le=100_000, alias="searchDepth")
    """How many first-parent commits below a refused head to look at for the one in force."""

    @model_validator(mode="after")
    def _needs_its_file(self) -> SignatureCheck:
        if self.mode == "ssh" and self.allowed_signers is None:
            raise ValueError("commits.verify: ssh needs allowedSigners: FILE")
        if self.mode == "gpg" and self.keyring is None:
            raise ValueError("commits.verify: gpg needs keyring: FILE")
        return self

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


class Verifier(Protocol):
    """One signature format's check (`sshsigs.SSHVerifier`, `gpgsigs.GPGVerifier`)."""

    def verify(self, commit: SignedCommit) -> Verdict: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Decision:
    head: Revision
    verdict: Verdict
    """The head's."""
    in_force: Revision | None
    """The commit to reconcile: the head when verified, else the last verified commit."""


def make_verifier(check: SignatureCheck) -> Verifier:
    """The verifier of `check.mode`, its trust file read and checked now."""
    if check.mode == "ssh" and check.allowed_signers is not None:
        return SSHVerifier(check.allowed_signers)
    if check.mode == "gpg" and check.keyring is not None:
        return GPGVerifier(check.keyring)
    raise SignatureConfigError(f"commits.verify: {check.mode}: nothing to verify with")


class CommitGate:
    """Decides, for each head of the tracked branch, which commit's declarations are in force;
    counts each new head in `reconciler_commit_verification_total`, exports it with its result
    in `reconciler_source_head_info` and logs a refusal once per head."""

    def __init__(self, check: SignatureCheck, *, branch: str, status_branch: str,
                 metrics: Metrics, verifier: Verifier | None = None) -> None:
        if status_branch == branch:
            raise SignatureConfigError(
                f"commits.verify: {check.mode} needs a status branch other than {branch!r}: "
                "the daemon's own status commits are not signed")
        self.check = check
        self.branch = branch
        self.metrics = metrics
        self.verifier = verifier or make_verifier(check)
        self._verdicts: dict[Revision, tuple[Verdict, Revision | None]] = {}
        self._last: Decision | None = None

    def close(self) -> None:
        self.verifier.close()

    def decide(self, head: Revision, read: Callable[[Revision], SignedCommit]) -> Decision:
        verdict, parent = self._verdict(head, read)
        in_force = head if verdict.verified else self._last_verified(parent, read)
        if in_force is None and self._last is not None:
            in_force = self._last.in_force  # nothing verified within reach: keep what is in force
        decision = Decision(head=head, verdict=verdict, in_force=in_force)
        if self._last is None or (self._last.head, self._last.verdict) != (head, verdict):
            self._report(decision)
        self._last = decision
        return decision

    def _verdict(self, commit: Revision,
                 read: Callable[[Revision], SignedCommit]) -> tuple[Verdict, Revision | None]:
        known = self._verdicts.get(commit)
        if known is not None:
            return known
        signed = read(commit)
        try:
            verdict = self.verifier.verify(signed) if signed.signature else UNSIGNED
        except (OSError, subprocess.SubprocessError) as err:  # cannot run: refuse, for now
            verdict = Verdict("error", f"cannot verify the signature: {err}")
        if verdict.result != "error":
            if len(self._verdicts) >= _VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[commit] = (verdict, signed.first_parent)
        return verdict, signed.first_parent

    def _last_verified(self, commit: Revision | None,
                       read: Callable[[Revision], SignedCommit]) -> Revision | None:
        for _ in range(self.check.search_depth):
            if commit is None:
                return None
            try:
                verdict, parent = self._verdict(commit, read)
            except KeyError:  # history missing from the mirror (a grafted or shallow remote)
                return None
            if verdict.verified:
                return commit
            commit = parent
        return None

    def _report(self, decision: Decision) -> None:
        verdict = decision.verdict
        self.metrics.observe_commit_verification(verdict.result)
        self.metrics.set_head(self.branch, decision.head, verdict.result)
        if verdict.verified:
            logger.info("commit {} on {} verified: {}", decision.head[:12], self.branch,
                        verdict.reason)
            return
        logger.warning("commit {} on {} refused ({}): {}; {}", decision.head[:12], self.branch,
                       verdict.result, verdict.reason, in_force_text(decision.in_force))


def in_force_text(in_force: Revision | None) -> str:
    if in_force is None:
        return "no verified commit is in force: nothing is reconciled"
    return f"commit {in_force[:12]} stays in force"
