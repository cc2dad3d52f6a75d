"""A secret a run prints escaped, encoded or line by line reaches none of the places a user
reads a run's output: the status branch's log tail, `reconciler logs`, the state dir's files.
And a local run's environment is its declaration's, never the daemon's.

The daemon is the real program (`reconciler run --once`) over a real bare repository; the run
is a real subprocess that prints what the standard library makes of its secrets."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.e2e.harness import STATUS_BRANCH, task_yaml
from tests.support.gitservers import git, git_env, make_bare_remote

pytestmark = pytest.mark.slow
PY = sys.executable

# Quote, backslash, spaces, template sequences, non-ASCII, slash and HTML characters: every
# escaping scheme changes it. Nothing but the secret holds the letters "ZQX" or "WVK".
CANARY = 'QUOTE"ZQX\\WVK ${x} %{y} \u00e9/<&>?= tail'
KEY_LINES = [
    "-----BEGIN TEST KEY-----",
    "MIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9AgEAAkEAu1SU1LfVLPHCozMx",
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u",
    "-----END TEST KEY-----",
]
KEY = "\n".join(KEY_LINES) + "\n"
PREFIXES = (b"", b"p", b"pq")
"""Bytes before the secret in a longer base64 stream: each alignment in a 3-byte group."""

PRINTER = r'''
import base64, json, os, shlex, sys
from urllib.parse import quote, quote_plus

secret, key = os.environ["TOKEN"], os.environ["PEM"]

def hcl(text):
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return text.replace("${", "$${").replace("%{", "%%{")

forms = {
    "exact": secret,
    "json": json.dumps(secret),
    "json-utf8": json.dumps(secret, ensure_ascii=False),
    "shell": shlex.quote(secret),
    "shell-escaped-quote": "'" + secret.replace("'", "'\\''") + "'",
    "terraform": '"' + hcl(secret) + '"',
    "url": quote(secret),
    "url-all": quote(secret, safe=""),
    "url-plus": quote_plus(secret),
}
data = secret.encode()
for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
    forms[name] = encode(data).decode()
    forms[name + "-unpadded"] = encode(data).decode().rstrip("=")
    for prefix in (b"", b"p", b"pq"):
        forms[f"{name}-stream-{len(prefix)}"] = encode(prefix + data + b"suffix").decode()
forms["key-json"] = json.dumps(key)
for name, text in forms.items():
    print(f"{name}: {text}")
print("key:")
sys.stdout.write(key)
print("done")
'''


def _b64_middles() -> list[str]:
    """Characters of each base64 stream that encode the secret's bytes alone."""
    middles = []
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for prefix in PREFIXES:
            stream = encode(prefix + CANARY.encode() + b"suffix").decode()
            start = (len(prefix) * 4) // 3 + 4
            end = ((len(prefix) + len(CANARY.encode())) * 4) // 3 - 4
            middles.append(stream[start:end])
    return middles


FORBIDDEN = ["ZQX", "WVK", *_b64_middles(), *(line for line in KEY_LINES if len(line) >= 6)]


def reconciler(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "reconciler", *args], capture_output=True, text=True,
                          env={**git_env(), **env}, timeout=180, stdin=subprocess.DEVNULL,
                          check=False)


def secrets_dir(root: Path, values: dict[tuple[str, str], str]) -> Path:
    for (secret, key), value in values.items():
        (root / secret).mkdir(parents=True, exist_ok=True)
        (root / secret / key).write_text(value)
    return root


def log_tail(remote: Path, name: str) -> str:
    text = git("--git-dir", remote, "show", f"{STATUS_BRANCH}:status/tasks/{name}.yaml")
    data = YAML(typ="safe").load(text)
    tail: str = data["lastRun"]["logTail"]
    return tail


def leaks(text: str) -> list[str]:
    return [piece for piece in FORBIDDEN if piece in text]


def state_dir_leaks(state: Path) -> dict[str, list[str]]:
    found = {}
    for folder, _, files in os.walk(state):
        for name in files:
            path = Path(folder) / name
            if not path.is_file():  # the supervisor host's socket
                continue
            pieces = leaks(path.read_bytes().decode("utf-8", errors="replace"))
            if pieces:
                found[str(path.relative_to(state))] = pieces
    return found


def test_printed_forms_of_a_secret_are_masked_everywhere(git_root: Path, tmp_path: Path) -> None:
    remote = make_bare_remote(git_root / "forms.git", {
        "forms.yaml": task_yaml("forms", [PY, "printer.py"], files={"printer.py": PRINTER},
                                secretEnv={"TOKEN": {"secret": "app", "key": "token"},
                                           "PEM": {"secret": "app", "key": "pem"}}),
    })
    secrets = secrets_dir(tmp_path / "secrets", {("app", "token"): CANARY, ("app", "pem"): KEY})
    state = tmp_path / "state"
    done = reconciler("run", "--once", "--repo", f"file://{remote}", "--state-dir", str(state),
                      "--secrets-dir", str(secrets), env={})
    assert done.returncode == 0, done.stderr[-3000:]

    tail = log_tail(remote, "forms")
    assert "b64url-stream-2:" in tail, tail
    assert "done" in tail, tail
    assert leaks(tail) == [], tail
    assert 'json: "****"' in tail  # masked inside its quotes

    logs = reconciler("logs", "task/forms", "--state-dir", str(state), env={})
    assert logs.returncode == 0, logs.stderr
    assert "terraform: " in logs.stdout, logs.stdout
    assert leaks(logs.stdout) == [], logs.stdout

    assert state_dir_leaks(state) == {}
    assert leaks(done.stderr) == []


IDENTITY = {"RECONCILER_RUN_ID", "RECONCILER_ENTRY", "RECONCILER_OPERATION",
            "RECONCILER_TRIGGER", "RECONCILER_ATTEMPT", "RECONCILER_REVISION",
            "RECONCILER_SPEC_HASH"}


STACK_MODULE = """
variable "used" {
  type = string
}

resource "terraform_data" "env" {
  input = var.used
  provisioner "local-exec" {
    command = "env"
  }
}
"""
ENGINE = {"TF_IN_AUTOMATION", "TF_INPUT", "CHECKPOINT_DISABLE", "TF_CLI_CONFIG_FILE",
          "TF_PLUGIN_CACHE_DIR", "PYTHONUNBUFFERED"}


def stack_yaml(name: str, **spec: object) -> str:
    return json.dumps({"apiVersion": "reconciler.io/v1alpha1", "kind": "Stack",
                       "metadata": {"name": name}, "spec": spec}, indent=2) + "\n"


def environment(log: str, prefix: str = "") -> dict[str, str]:
    """NAME=value lines of `env` in a run log (after `prefix`, a provisioner's label)."""
    found = {}
    for line in log.splitlines():
        if line.startswith(prefix) and "=" in line:
            name, value = line[len(prefix):].split("=", 1)
            if name.isidentifier():
                found[name] = value
    return found


@pytest.mark.engine
def test_a_local_run_sees_its_declaration_and_nothing_of_the_daemon(
    git_root: Path, tmp_path: Path
) -> None:
    remote = make_bare_remote(git_root / "env.git", {
        "env.yaml": task_yaml("env", ["env"], env={"DECLARED": "yes"},
                              secretEnv={"USED": {"secret": "used", "key": "token"}}),
        "stack.yaml": stack_yaml("envstack", path="envstack", env={"DECLARED": "yes"},
                                 secretEnv={"TF_VAR_used": {"secret": "used", "key": "token"}}),
        "envstack/main.tf": STACK_MODULE,
    })
    secrets = secrets_dir(tmp_path / "secrets", {
        ("used", "token"): "used-token-0a1b2c", ("other", "token"): "other-token-3d4e5f",
    })
    state = tmp_path / "state"
    daemon_env = {
        "SOME_TOKEN": "daemon-canary-9f8e7d",
        "RECONCILER_SECRETS_DIR": str(secrets),
        "RECONCILER_MAX_PARALLEL": "2",
        "PYTHONPATH": str(tmp_path / "daemon-only"),
        "LC_ALL": "C.UTF-8",
    }
    done = reconciler("run", "--once", "--repo", f"file://{remote}", "--state-dir", str(state),
                      "--engine-fallback", "terraform", env=daemon_env)
    assert done.returncode == 0, done.stderr[-3000:]
    for entry, prefix, extra in (("task/env", "", set()),
                                 ("stack/envstack", "terraform_data.env (local-exec): ", ENGINE)):
        logs = reconciler("logs", entry, "--state-dir", str(state), env={})
        assert logs.returncode == 0, logs.stderr
        seen = environment(logs.stdout, prefix)

        assert seen["DECLARED"] == "yes", logs.stdout
        assert seen["USED" if not extra else "TF_VAR_used"] == "****"
        assert seen["HOME"].startswith(str(state / "work"))
        assert seen["TMPDIR"].startswith(str(state / "work"))
        assert seen["LC_ALL"] == "C.UTF-8"
        assert {name for name in seen if name.startswith("RECONCILER_")} == IDENTITY
        assert extra <= set(seen)
        for name in ("SOME_TOKEN", "PYTHONPATH", "RECONCILER_SECRETS_DIR",
                     "RECONCILER_MAX_PARALLEL"):
            assert name not in seen
        for value in ("daemon-canary-9f8e7d", "other-token-3d4e5f", "used-token-0a1b2c",
                      str(secrets)):
            assert value not in logs.stdout
