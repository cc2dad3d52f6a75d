"""What can go wrong talking to the Git remote, grouped by what the caller should do next.

- `TransientSourceError`: the network or the server had a bad moment (refused connection,
  timeout, a server error, a push race lost too often). Retry on the next poll, with backoff.
- `SourceConfigurationError`: retrying will not help until a person changes something (a URL
  with an unknown scheme, wrong credentials, a missing known_hosts file, an unknown or changed
  host key, a repository or branch that does not exist, a branch the server refuses to update).
  Report it, keep serving, and poll again at the normal interval in case it gets fixed.

Every message is one line and free of credentials: URLs are shown without their user info and
known secret values are masked.
"""

from __future__ import annotations

from typing import ClassVar


class SourceError(Exception):
    """A problem with the Git remote. `retryable` tells the caller whether waiting helps."""

    retryable: ClassVar[bool] = True


class TransientSourceError(SourceError):
    """Retry later: the remote was unreachable, slow or busy."""

    retryable = True


class RemoteUnreachableError(TransientSourceError):
    """The connection failed or timed out, or the server answered with an error."""


class PushConflictError(TransientSourceError):
    """The branch kept moving under every attempt to push to it."""


class SourceConfigurationError(SourceError):
    """Retrying is pointless until the configuration (or the remote) is changed."""

    retryable = False


class InvalidRemoteURLError(SourceConfigurationError, ValueError):
    """The URL has a scheme other than file, git, http, https or ssh, or no host or path."""


class RemoteNotFoundError(SourceConfigurationError, LookupError):
    """The server (or the local path) has no repository at that URL."""


class AuthenticationError(SourceConfigurationError, PermissionError):
    """The remote refused the credentials, or asked for credentials that are not configured."""


class HostKeyError(SourceConfigurationError):
    """The SSH host key cannot be trusted: unknown, changed, revoked or unreadable."""


class UnknownHostKeyError(HostKeyError):
    """The host has no entry in the known_hosts file."""


class HostKeyMismatchError(HostKeyError):
    """The host offered a key other than the one(s) the known_hosts file lists for it."""


class BranchNotFoundError(SourceConfigurationError, LookupError):
    """A branch that must exist is not on the remote (or not in the mirror yet)."""


class PushRejectedError(SourceConfigurationError):
    """The server refused to update a branch for a reason other than a concurrent push
    (a protected branch, a hook, missing write permission)."""


class HistoryRewrittenError(PushConflictError):
    """While pushing, the branch was replaced by a history that no longer holds the commit the
    change was built on (a force-push or reset): the change alone would not make it whole."""
