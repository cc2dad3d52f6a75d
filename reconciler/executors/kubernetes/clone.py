"""The init container that clones a Git repository into the pod's `/workspace`.

Used for a Task's `repository` and for a Stack's module (the daemon's own repository at the
run's exact commit). It runs a short POSIX shell script in a small Git image: fetch only the
wanted ref (`--depth 1`), fall back to every branch and tag when the server refuses to serve a
commit by id, and check the commit out detached.

Credentials come from a Secret through `secretKeyRef` environment variables, never through the
daemon (which does not read Secrets on Kubernetes): `username` (optional) and `password` for
HTTPS, `ssh-privatekey` and `known_hosts` for SSH. A missing Secret or key keeps the container
from starting (`CreateContainerConfigError`), which the executor reports on the entry. Host
keys are checked strictly: an SSH server missing from `known_hosts` is refused. A password is
sent over https only, and only to the scheme, host and port of the declared URL: git asks the
credential helper again for any other host it is sent to (a redirect, a submodule), and the
helper answers nothing there.

The container runs as the `nobody` user (65534), which has a passwd entry in Alpine, Debian
and distroless images: OpenSSH refuses to run for a UID without one.
"""

from __future__ import annotations

import re
from typing import Any

CLONE_CONTAINER = "clone"
WORKSPACE = "/workspace"
DEFAULT_GIT_IMAGE = "alpine/git:2.47.2"
CLONE_USER = 65534

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")

# Files are group-writable (umask 0002) and the group is the pod's fsGroup, so the run's own
# user can write next to them (`.terraform/` beside a stack's module).
CLONE_SCRIPT = r"""set -eu
if [ -n "${GIT_SSH_KEY:-}" ]; then
  (umask 077
   printf '%s\n' "$GIT_SSH_KEY" > "$HOME/.ssh-key"
   printf '%s\n' "${GIT_KNOWN_HOSTS:-}" > "$HOME/.known-hosts")
  GIT_SSH_COMMAND="ssh -i $HOME/.ssh-key -o IdentitiesOnly=yes"
  GIT_SSH_COMMAND="$GIT_SSH_COMMAND -o UserKnownHostsFile=$HOME/.known-hosts"
  export GIT_SSH_COMMAND="$GIT_SSH_COMMAND -o StrictHostKeyChecking=yes"
fi
umask 0002
git config --global safe.directory '*'
git config --global init.defaultBranch main
if [ -n "${GIT_PASSWORD:-}" ]; then
  case "$GIT_URL" in
    [Hh][Tt][Tt][Pp][Ss]://*) ;;
    *) echo "refusing to send the credentials Secret to $GIT_URL: passwords go over https only" >&2
       exit 1 ;;
  esac
  # The helper answers for the declared scheme and host (with its port) and nothing else, so
  # a redirect, a submodule or an alternate on another host never gets the password.
  authority=${GIT_URL#*://}
  authority=${authority%%/*}
  GIT_CREDENTIAL_HOST=$(printf '%s' "${authority##*@}" | tr 'A-Z' 'a-z')
  export GIT_CREDENTIAL_HOST
  # An empty value drops every helper configured before ours (the image's own, if any).
  git config --global credential.helper ''
  # Read from the environment when git asks: the password never lands in a file.
  git config --global --add credential.helper '!f() { test "$1" = get || return 0;
    protocol= host=
    while IFS== read -r key value; do
      case "$key" in protocol) protocol=$value ;; host) host=$value ;; esac
    done
    host=$(printf "%s" "$host" | tr "A-Z" "a-z")
    test "$protocol" = https && test "$host" = "$GIT_CREDENTIAL_HOST" || return 0
    echo "username=${GIT_USERNAME:-git}"; echo "password=$GIT_PASSWORD"; }; f'
fi
cd "$WORKSPACE"
git init -q .
git remote add origin "$GIT_URL"
if git fetch -q --depth 1 origin "$GIT_REF"; then
  git checkout -q --detach FETCH_HEAD
else
  echo "fetching $GIT_REF alone failed; fetching every branch and tag" >&2
  git fetch -q --tags origin '+refs/heads/*:refs/remotes/origin/*'
  git checkout -q --detach "origin/$GIT_REF" 2>/dev/null || git checkout -q --detach "$GIT_REF"
fi
echo "checked out $(git rev-parse HEAD) ($GIT_REF)"
"""

def literal(text: str) -> str:
    """Kubernetes expands `$(VAR)` in command, args and env values and turns `$$` into `$`;
    doubling every `$` makes the container see exactly what was declared."""
    return text.replace("$", "$$")


def is_ssh_url(url: str) -> bool:
    return url.startswith("ssh://") or bool(_SCP_LIKE.match(url))


def credential_env(url: str, secret: str | None) -> list[dict[str, Any]]:
    """The `secretKeyRef` variables the clone script reads for `url`."""
    if secret is None:
        return []

    def ref(name: str, key: str, *, optional: bool = False) -> dict[str, Any]:
        selector: dict[str, Any] = {"name": secret, "key": key}
        if optional:
            selector["optional"] = True
        return {"name": name, "valueFrom": {"secretKeyRef": selector}}

    if is_ssh_url(url):
        return [ref("GIT_SSH_KEY", "ssh-privatekey"), ref("GIT_KNOWN_HOSTS", "known_hosts")]
    if not url.lower().startswith("https://"):
        return []  # git:// has no credentials, and a password never goes over plain http
    return [ref("GIT_USERNAME", "username", optional=True), ref("GIT_PASSWORD", "password")]


def clone_container(
    *,
    url: str,
    ref: str,
    credentials_secret: str | None,
    image: str,
    group: int,
    resources: dict[str, Any],
    security: dict[str, Any],
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "GIT_URL", "value": literal(url)},
        {"name": "GIT_REF", "value": literal(ref)},
        {"name": "WORKSPACE", "value": WORKSPACE},
        # The clone container's own /tmp: the key and git config never reach the run.
        {"name": "HOME", "value": "/tmp"},  # noqa: S108
        {"name": "GIT_TERMINAL_PROMPT", "value": "0"},
    ]
    env += credential_env(url, credentials_secret)
    container: dict[str, Any] = {
        "name": CLONE_CONTAINER,
        "image": image,
        "command": ["/bin/sh", "-c", literal(CLONE_SCRIPT)],
        "env": env,
        "workingDir": WORKSPACE,
        "securityContext": {**security, "runAsUser": CLONE_USER, "runAsGroup": group},
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}],
    }
    if resources:
        container["resources"] = resources
    return container
