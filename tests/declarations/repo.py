"""A declarations repository in a temporary folder, written file by file and committed with
the real `git` CLI the way a user would, with the machine's Git configuration ignored."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import DesiredState
from reconciler.declarations.loader import load_declarations

GIT = shutil.which("git") or "git"
SAMPLE = Path(__file__).resolve().parents[2] / "sample-repo"
HEADER = "apiVersion: reconciler.io/v1alpha1\n"


def git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Dana Developer",
        "GIT_AUTHOR_EMAIL": "dana@example.invalid",
        "GIT_COMMITTER_NAME": "Dana Developer",
        "GIT_COMMITTER_EMAIL": "dana@example.invalid",
        "LC_ALL": "C",
    }


def task(name: str, body: str = "  command: [python3, -c, 'print(1)']\n", extra: str = "") -> str:
    """A Task document; `body` is the indented content of `spec`."""
    return f"{HEADER}kind: Task\nmetadata:\n  name: {name}\n{extra}spec:\n{body}"


def stack(name: str, path: str, body: str = "") -> str:
    return f"{HEADER}kind: Stack\nmetadata:\n  name: {name}\nspec:\n  path: {path}\n{body}"


MAIN_TF = 'resource "terraform_data" "x" {\n  input = "y"\n}\n'


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._env = git_env(root.parent)

    def write(self, files: dict[str, str | bytes]) -> Repo:
        for path, content in files.items():
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(textwrap.dedent(content) if content.startswith("\n") else content)
        return self

    def link(self, path: str, target: str) -> Repo:
        where = self.root / path
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(target)
        return self

    def remove(self, *paths: str) -> Repo:
        for path in paths:
            (self.root / path).unlink()
        return self

    def git(self, *args: str) -> str:
        done = subprocess.run(
            [GIT, *args], cwd=self.root, env=self._env, capture_output=True, text=True,
            check=True, timeout=60,
        )
        return done.stdout.strip()

    def commit(self, message: str = "change") -> str:
        if not (self.root / ".git").exists():
            self.git("init", "--quiet", "--initial-branch=main")
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def load(self, path: str = ".") -> DesiredState:
        return load_declarations(DirectorySource(self.root), path=path)


def sample_history(root: Path) -> Repo:
    """A repository at `root` whose one commit holds sample-repo/."""
    repo = Repo(root)
    shutil.copytree(SAMPLE, repo.root, dirs_exist_ok=True)
    repo.commit("sample")
    return repo
