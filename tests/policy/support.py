"""Repositories on disk, policy files and `reconciler validate` as a user runs it."""

from __future__ import annotations

from pathlib import Path

HEADER = "apiVersion: reconciler.io/v1alpha1\n"


def task(name: str, *spec: str, image: str | None = "registry.example.io/team/app:1") -> str:
    lines = [f"  image: {image}"] if image else []
    body = "\n".join(f"  {line}" for line in spec)
    head = f"{HEADER}kind: Task\nmetadata:\n  name: {name}\nspec:\n"
    return head + "".join(f"{x}\n" for x in lines) + "  command: [run]\n" + (
        body + "\n" if spec else "")


def stack(name: str, *spec: str) -> str:
    body = "".join(f"  {line}\n" for line in spec)
    return f"{HEADER}kind: Stack\nmetadata:\n  name: {name}\nspec:\n  path: infra\n{body}"


def defaults(*spec: str) -> str:
    body = "".join(f"  {line}\n" for line in spec)
    return f"{HEADER}kind: Defaults\nmetadata:\n  name: defaults\nspec:\n{body}"


def policy(*spec: str) -> str:
    body = "".join(f"  {line}\n" for line in spec) or "  {}\n"
    return f"{HEADER}kind: Policy\nspec:\n{body}" if spec else f"{HEADER}kind: Policy\n"


def write_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "infra").mkdir(exist_ok=True)
    (root / "infra" / "main.tf").write_text('resource "terraform_data" "x" {}\n')
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def where(text: str, fragment: str, value: str) -> tuple[int, int]:
    """1-based line and column of `value` on the line holding `fragment`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number, line.index(value, line.index(fragment)) + 1
    raise AssertionError(f"{fragment!r} is not in the text")


