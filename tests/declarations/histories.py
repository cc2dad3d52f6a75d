"""Random histories of a declarations repository, for checking that loading commit after
commit gives exactly what loading each commit afresh gives.

The files are drawn from small pools on purpose, so that the cases the cross-file checks
care about come up often: the same name declared twice, `dependsOn` naming something
missing or closing a cycle, several Defaults, files that do not parse, Stacks whose folder
or module appears, changes or disappears, Task files read from the repository, symlinks, and
folders replaced by files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hypothesis import strategies as st

from tests.declarations.repo import HEADER, MAIN_TF

NAMES = ("a", "b", "c")
DECLARATION_PATHS = (
    "t1.yaml", "t2.yml", "team/t3.yaml", "team/sub/t4.yaml", "other/t5.yaml",
    "reconciler.yaml",
)
TARGETS = ("task/a", "task/b", "task/c", "stack/s", "task/nowhere")


@st.composite
def tasks(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    lines = [f"{HEADER}kind: Task\nmetadata:\n  name: {name}\n"]
    if draw(st.booleans()):
        lines.append("  labels: {team: data}\n")
    lines.append("spec:\n  command: [python3, -c, 'print(1)']\n")
    targets = draw(st.lists(st.sampled_from(TARGETS), max_size=3))
    if targets:
        lines.append(f"  dependsOn: [{', '.join(targets)}]\n")
    extra = draw(st.sampled_from([
        "", "", "  timeout: soon\n", "  retries: 2\n",
        "  files:\n    run.py: {path: scripts/run.py}\n",
        "  files:\n    run.py: {path: scripts/link.py}\n",
        "  files:\n    note.txt: hello\n",
    ]))
    lines.append(extra)
    return "".join(lines)


@st.composite
def stacks(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["s", "t"]))
    path = draw(st.sampled_from(["stacks/net", "stacks/app", "current", "missing"]))
    text = f"{HEADER}kind: Stack\nmetadata:\n  name: {name}\nspec:\n  path: {path}\n"
    targets = draw(st.lists(st.sampled_from(TARGETS), max_size=2))
    if targets:
        text += f"  dependsOn: [{', '.join(targets)}]\n"
    if draw(st.booleans()):
        text += "  varFiles: [prod.tfvars]\n"
    return text


DEFAULTS = st.sampled_from([
    f"{HEADER}kind: Defaults\nspec:\n  namespace: jobs\n  env: {{TZ: UTC}}\n",
    f"{HEADER}kind: Defaults\nspec:\n  timeout: 20m\n  image: alpine:3\n",
    f"{HEADER}kind: Defaults\nspec:\n  timeout: twenty\n",
])
ODD = st.sampled_from([
    f"{HEADER}kind: [\n",
    f"{HEADER}kind: Defaults\nspec: {{env: [\n",
    f"{HEADER}kind: Tusk\nmetadata: {{name: odd}}\n",
    f"{HEADER}kind: Task\nmetadata: {{name: Not_A_Name}}\nspec: {{command: [ls]}}\n",
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
    "just: [some, yaml]\n",
])
DOCUMENTS = st.one_of(tasks(), tasks(), stacks(), DEFAULTS, ODD)
DECLARATION_FILES = st.lists(DOCUMENTS, min_size=1, max_size=3).map("---\n".join)

MODULE_CALL = 'module "m" {\n  source = "../../modules/m"\n}\n'
REPOSITORY_FILES = {
    "stacks/net/main.tf": st.sampled_from([MAIN_TF, MAIN_TF + MODULE_CALL, "# empty\n"]),
    "stacks/net/prod.tfvars": st.sampled_from(["x = 1\n", "x = 2\n"]),
    "stacks/app/main.tf": st.sampled_from([MAIN_TF, MAIN_TF.replace("y", "z")]),
    "modules/m/main.tf": st.sampled_from([MAIN_TF, "# module\n"]),
    "scripts/run.py": st.sampled_from(["print(1)\n", "print(2)\n"]),
}
LINKS = {"current": ("stacks/net", "stacks/app"), "scripts/link.py": ("run.py", "../../etc")}
FOLDERS = ("team", "other", "stacks/app", "modules", "scripts")


@st.composite
def edits(draw: st.DrawFn) -> tuple[str, str, str]:
    """(action, path, content) for `apply`."""
    action = draw(st.sampled_from([
        "declare", "declare", "declare", "remove", "rename", "repository", "link", "drop-folder",
        "folder-to-file",
    ]))
    if action == "declare":
        return action, draw(st.sampled_from(DECLARATION_PATHS)), draw(DECLARATION_FILES)
    if action in ("remove", "rename"):
        return action, draw(st.sampled_from(DECLARATION_PATHS)), draw(
            st.sampled_from(DECLARATION_PATHS))
    if action == "repository":
        path = draw(st.sampled_from(sorted(REPOSITORY_FILES)))
        return action, path, draw(REPOSITORY_FILES[path])
    if action == "link":
        path = draw(st.sampled_from(sorted(LINKS)))
        return action, path, draw(st.sampled_from(LINKS[path]))
    return action, draw(st.sampled_from(FOLDERS)), ""


def apply(root: Path, edit: tuple[str, str, str]) -> None:
    """Make one edit in the work tree at `root`."""
    action, path, content = edit
    target = root / path
    if action in ("declare", "repository"):
        _make_parents(root, target)
        _clear(target)
        target.write_text(content)
    elif action == "remove":
        if target.is_file() or target.is_symlink():
            target.unlink()
    elif action == "rename":
        destination = root / content
        if target.is_file() and not target.is_symlink() and not destination.exists():
            _make_parents(root, destination)
            target.rename(destination)
    elif action == "link":
        _make_parents(root, target)
        _clear(target)
        target.symlink_to(content)
    elif action == "drop-folder":
        _clear(target)
    elif action == "folder-to-file":
        _make_parents(root, target)
        _clear(target)
        target.write_text("no longer a folder\n")


def _clear(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def _make_parents(root: Path, target: Path) -> None:
    """The folders above `target`, replacing files (after `folder-to-file`) or symlinks in
    the way."""
    for parent in reversed(target.relative_to(root).parents[:-1]):
        folder = root / parent
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        folder.mkdir(exist_ok=True)
