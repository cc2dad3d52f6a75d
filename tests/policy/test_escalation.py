"""Escalation attempts a repository's author can make, each refused by `validate --policy`
with the line that asked for it, as the daemon refuses them; and requests within the policy,
which still pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.policy.support import defaults, policy, stack, task, where, write_repo
from tests.support.commands import cli

OPEN = ('serviceAccounts: ["*"]', 'secrets: ["*"]')
"""A policy that allows every service account and every secret: the daemon's own stay out."""
CLONE = ('repositories: ["https://git.example.io/org/"]',)
IMAGES = ('images: ["registry.example.io/"]',)


@dataclass(frozen=True)
class Attempt:
    files: dict[str, str]
    rules: tuple[str, ...]
    denied: tuple[str, str, str, str, str]
    """(file, text on the line, value located, field, reason)"""
    flags: tuple[str, ...] = field(default=())


def _repo_url(url: str) -> Attempt:
    return Attempt({"t.yaml": task("clone", "repository:", f"  url: {url}")}, CLONE,
                   ("t.yaml", "url:", url, "spec.repository.url", "repository URL"))


def _image(image: str) -> Attempt:
    return Attempt({"t.yaml": task("img", image=image)}, IMAGES,
                   ("t.yaml", "image:", image, "spec.image", f"image {image} is not under"))


ATTEMPTS: dict[str, Attempt] = {
    "task takes the daemon's service account": Attempt(
        {"t.yaml": task("sa", "serviceAccountName: reconciler")}, OPEN,
        ("t.yaml", "serviceAccountName", "reconciler", "spec.serviceAccountName",
         "service account reconciler is reserved for the daemon")),
    "stack takes the privileged runner account": Attempt(
        {"s.yaml": stack("sa", "serviceAccountName: reconciler-runner")}, OPEN,
        ("s.yaml", "serviceAccountName", "reconciler-runner", "spec.serviceAccountName",
         "reserved for the daemon")),
    "task takes a stack's own account (it reaches that stack's state)": Attempt(
        {"t.yaml": task("sa", "serviceAccountName: reconciler-stack-network")}, OPEN,
        ("t.yaml", "serviceAccountName", "reconciler-stack-network", "spec.serviceAccountName",
         "service account reconciler-stack-network is reserved for the daemon")),
    "daemon's account named by a flag": Attempt(
        {"t.yaml": task("sa", "serviceAccountName: gitops")}, OPEN,
        ("t.yaml", "serviceAccountName", "gitops", "spec.serviceAccountName", "reserved"),
        ("--service-account", "gitops")),
    "any account without a policy allowing it": Attempt(
        {"t.yaml": task("sa", "serviceAccountName: admin")}, (),
        ("t.yaml", "serviceAccountName", "admin", "spec.serviceAccountName",
         "service account admin is not allowed (the policy allows none)")),
    "daemon's account through Defaults": Attempt(
        {"reconciler.yaml": defaults("serviceAccountName: reconciler"),
         "t.yaml": task("sa")}, OPEN,
        ("reconciler.yaml", "serviceAccountName", "reconciler", "spec.serviceAccountName",
         "reserved for the daemon")),
    "daemon's Git credentials through secretEnv": Attempt(
        {"t.yaml": task("steal", "secretEnv:",
                        "  TOKEN: {secret: reconciler-credentials, key: password}")}, OPEN,
        ("t.yaml", "TOKEN:", "reconciler-credentials", "spec.secretEnv.TOKEN.secret",
         "secret reconciler-credentials holds the daemon's own credentials")),
    "daemon's Git credentials as clone credentials": Attempt(
        {"t.yaml": task("steal", "repository:", "  url: https://evil.example.com/x.git",
                        "  credentialsSecret: reconciler-credentials")}, OPEN,
        ("t.yaml", "credentialsSecret", "reconciler-credentials",
         "spec.repository.credentialsSecret", "daemon's own credentials")),
    "the stack pods' clone credentials (--source-credentials-secret)": Attempt(
        {"t.yaml": task("steal", "secretEnv:", "  KEY: {secret: git-creds, key: ssh-privatekey}")},
        OPEN, ("t.yaml", "KEY:", "git-creds", "spec.secretEnv.KEY.secret", "daemon's own"),
        ("--source-credentials-secret", "git-creds")),
    "another stack's state": Attempt(
        {"s.yaml": stack("peek", "secretEnv:",
                         "  STATE: {secret: tfstate-default-reconciler-db, key: tfstate}")},
        OPEN, ("s.yaml", "STATE:", "tfstate-default-reconciler-db",
               "spec.secretEnv.STATE.secret", "own credentials or state")),
    "daemon's credentials as an image pull secret in Defaults": Attempt(
        {"reconciler.yaml": defaults("imagePullSecrets: [reconciler-credentials]"),
         "t.yaml": task("pull")}, OPEN,
        ("reconciler.yaml", "imagePullSecrets", "reconciler-credentials",
         "spec.imagePullSecrets[0]", "daemon's own credentials")),
    "a secret outside the allowed names": Attempt(
        {"t.yaml": task("other", "secretEnv:", "  DB: {secret: db-root, key: password}")},
        ('secrets: ["app-*", report-creds]',),
        ("t.yaml", "DB:", "db-root", "spec.secretEnv.DB.secret",
         "secret db-root is not allowed (allowed: app-*, report-creds)")),
    "namespace through Defaults": Attempt(
        {"reconciler.yaml": defaults("namespace: kube-system"), "t.yaml": task("ns")},
        ('namespaces: [runs, "data-*"]',),
        ("reconciler.yaml", "namespace:", "kube-system", "spec.namespace",
         "namespace kube-system is not allowed (allowed: runs, data-*)")),
    "a namespace other than the daemon's, without a policy list": Attempt(
        {"reconciler.yaml": defaults("namespace: other"), "t.yaml": task("ns")}, (),
        ("reconciler.yaml", "namespace:", "other", "spec.namespace",
         "namespace other is not allowed (allowed: runs)")),
    "image on a look-alike registry host": _image("registry.example.io.evil.com/x:1"),
    "image on the registry with another port": _image("registry.example.io:444/x:1"),
    "image with the registry as a path": _image("evil.com/registry.example.io/x"),
    "image from Docker Hub": _image("python:3.12"),
    "image through Defaults": Attempt(
        {"reconciler.yaml": defaults("image: docker.io/evil/miner:1"),
         "t.yaml": task("img", image=None)}, IMAGES,
        ("reconciler.yaml", "image:", "docker.io/evil/miner:1", "spec.image",
         "not under an allowed prefix (registry.example.io/)")),
    "stack runner image through Defaults": Attempt(
        {"reconciler.yaml": defaults("runnerImages: {opentofu: 'evil.com/tofu:1'}"),
         "s.yaml": stack("infra")}, IMAGES,
        ("reconciler.yaml", "runnerImages", "'evil", "spec.runnerImages.opentofu",
         "runner image evil.com/tofu:1")),
    "clone from a look-alike host": _repo_url("https://git.example.io.evil.com/org/x.git"),
    "clone with the host as user info": _repo_url("https://git.example.io@evil.com/org/x"),
    "clone with dot segments": _repo_url("https://git.example.io/org/../../evil/x.git"),
    "clone with encoded dot segments": _repo_url("https://git.example.io/org/%2e%2e/evil/x"),
    "clone with an encoded slash": _repo_url("https://git.example.io/org%2F..%2Fevil/x"),
    "clone from a sibling path": _repo_url("https://git.example.io/org-evil/x.git"),
    "clone over plain http": _repo_url("http://git.example.io/org/x.git"),
    "clone from another port": _repo_url("https://git.example.io:8443/org/x.git"),
    "clone over ssh from the host": _repo_url("git@git.example.io:org/x.git"),
    "clone from a backslash trick": _repo_url("https://git.example.io\\@evil.com/org/x"),
    "stacks not allowed": Attempt(
        {"s.yaml": stack("infra")}, ("stacks: {allowed: false}",),
        ("s.yaml", "kind:", "Stack", "kind", "Stacks are not allowed")),
    "engine not allowed": Attempt(
        {"s.yaml": stack("infra", "engine: terraform")}, ("stacks: {engines: [opentofu]}",),
        ("s.yaml", "engine:", "terraform", "spec.engine",
         "engine terraform is not allowed (allowed: opentofu)")),
    "task timeout over the limit": Attempt(
        {"t.yaml": task("slow", "timeout: 12h")}, ("limits: {timeout: 6h}",),
        ("t.yaml", "timeout:", "12h", "spec.timeout", "timeout 12h is over the limit of 6h")),
    "timeout over the limit through Defaults": Attempt(
        {"reconciler.yaml": defaults("timeout: 1d"), "s.yaml": stack("slow")},
        ("limits: {timeout: 6h}",),
        ("reconciler.yaml", "timeout:", "1d", "spec.timeout", "over the limit of 6h")),
    "retries over the limit": Attempt(
        {"s.yaml": stack("flaky", "retries: 9")}, ("limits: {retries: 3}",),
        ("s.yaml", "retries:", "9", "spec.retries", "9 retries are over the limit of 3")),
    "cpu limit over the bound": Attempt(
        {"t.yaml": task("big", "resources: {limits: {cpu: '16', memory: 1Gi}}")},
        ('limits: {cpu: "4", memory: 8Gi}',),
        ("t.yaml", "resources:", "'16'", "spec.resources.limits.cpu",
         "cpu limit 16 is over the limit of 4")),
    "memory request over the bound through Defaults": Attempt(
        {"reconciler.yaml": defaults("resources: {requests: {memory: 64Gi}}"),
         "t.yaml": task("big", "resources: {limits: {cpu: 500m, memory: 1Gi}}")},
        ('limits: {cpu: "4", memory: 8Gi}',),
        ("reconciler.yaml", "resources:", "64Gi", "spec.resources.requests.memory",
         "memory request 64Gi is over the limit of 8Gi")),
    "no cpu limit at all under a bound": Attempt(
        {"t.yaml": task("unbounded", "resources:", "  limits: {memory: 1Gi}")},
        ('limits: {cpu: "4"}',),
        ("t.yaml", "limits:", "limits", "spec.resources.limits.cpu",
         "no cpu limit is set; the policy requires one of at most 4")),
}


def _validate(capsys: pytest.CaptureFixture[str], tmp_path: Path, attempt: Attempt
              ) -> tuple[int, str, str]:
    repo = write_repo(tmp_path / "repo", attempt.files)
    (tmp_path / "policy.yaml").write_text(policy(*attempt.rules))
    return cli(capsys, "validate", str(repo), "--policy", str(tmp_path / "policy.yaml"),
               "--executor", "kubernetes", "--namespace", "runs", *attempt.flags)


@pytest.mark.parametrize("name", list(ATTEMPTS))
def test_escalation_is_refused_at_its_line(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    attempt = ATTEMPTS[name]
    code, out, err = _validate(capsys, tmp_path, attempt)
    file, fragment, value, field_name, reason = attempt.denied
    line, column = where(attempt.files[file], fragment, value)
    expected = f"{tmp_path / 'repo' / file}:{line}:{column}: {field_name}: denied by policy: "
    assert code == 1, out + err
    found = [x for x in out.splitlines() if x.startswith(expected)]
    assert found, f"expected {expected}...{reason}, got:\n{out}"
    assert reason in found[0]
    assert "invalid" in err


ALLOWED: dict[str, Attempt] = {
    "an allowed account, secrets, image, clone and namespace": Attempt(
        {"reconciler.yaml": defaults("namespace: data-eu", "imagePullSecrets: [app-pull]"),
         "t.yaml": task("ok", "serviceAccountName: runner", "secretEnv:",
                        "  A: {secret: app-token, key: t}", "  B: {secret: report-creds, key: k}",
                        "repository:", "  url: https://git.example.io/org/app.git",
                        "  credentialsSecret: app-git",
                        "resources: {requests: {cpu: '4'}, limits: {cpu: 4000m, memory: 8Gi}}",
                        "timeout: 6h", "retries: 10")},
        ("namespaces: [runs, \"data-*\"]", "serviceAccounts: [runner]",
         'secrets: ["app-*", report-creds]', *IMAGES, *CLONE,
         'limits: {timeout: 6h, retries: 10, cpu: "4", memory: 8Gi}'),
        ("", "", "", "", "")),
    "clone URLs that name the same place differently": Attempt(
        {"a.yaml": task("a", "repository: {url: 'https://GIT.example.io:443/org/app'}"),
         "b.yaml": task("b", "repository: {url: 'https://ci@git.example.io/org/sub/app.git'}")},
        CLONE, ("", "", "", "", "")),
    "a stack with an allowed engine, runner image and the daemon's namespace": Attempt(
        {"reconciler.yaml": defaults("runnerImages: {opentofu: 'registry.example.io/tofu:1'}"),
         "s.yaml": stack("infra", "engine: opentofu")},
        ("stacks: {allowed: true, engines: [opentofu]}", *IMAGES), ("", "", "", "", "")),
}


@pytest.mark.parametrize("name", list(ALLOWED))
def test_what_the_policy_allows_still_passes(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _validate(capsys, tmp_path, ALLOWED[name])
    assert (code, out) == (0, ""), out + err


def test_without_a_policy_validate_checks_the_declarations_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo", {"t.yaml": task("sa", "serviceAccountName: admin")})
    assert cli(capsys, "validate", str(repo))[0] == 0
    (tmp_path / "empty.yaml").write_text(policy())
    code, out, _ = cli(capsys, "validate", str(repo), "--policy", str(tmp_path / "empty.yaml"))
    assert code == 1
    assert "spec.serviceAccountName: denied by policy: service account admin" in out
