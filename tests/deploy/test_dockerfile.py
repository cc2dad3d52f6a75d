"""The Dockerfile, checked statically (no container engine runs here): pinned bases, a final
stage without compilers running as a numeric user, `reconciler run` as the entrypoint, the
engine, and a build context that holds what the build copies."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field

from tests.deploy.support import REPO

COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc ", "python3-dev",
             "libc6-dev", "rustc", "cargo")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comments inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def parse() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults, and the stages in order."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines((REPO / "Dockerfile").read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value.strip('"')
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)


def test_bases_are_pinned_to_an_exact_version() -> None:
    args, stages = parse()
    for stage in stages:
        if stage.base in {s.name for s in stages}:
            continue
        image = expand(stage.base, args)
        pinned_digest = "@sha256:" in image
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert pinned_digest or re.match(r"^\d+\.\d+\.\d+", tag), f"{image} is not pinned"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", args["PYTHON_IMAGE"])


def test_the_build_is_multi_stage_and_the_final_stage_has_no_compiler() -> None:
    _, stages = parse()
    assert len(stages) >= 2
    final = stages[-1]
    copied_from = [rest.split()[0] for keyword, rest in final.instructions
                   if keyword == "COPY" and rest.startswith("--from=")]
    assert "--from=build" in copied_from
    for keyword, rest in final.instructions:
        if keyword == "RUN":
            for compiler in COMPILERS:
                assert compiler not in rest + " ", f"the final stage installs {compiler}"
            assert "apt-get install" not in rest or "--no-install-recommends" in rest
            assert "apt-get install" not in rest or "rm -rf /var/lib/apt/lists" in rest


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    _, stages = parse()
    users = [rest for keyword, rest in stages[-1].instructions if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit()
    assert int(user) > 0
    assert not group or (group.isdigit() and int(group) > 0)
    # The manifests run the pod as the same user, so files the image owns are its own.
    assert f"runAsUser: {user}" in (REPO / "deploy" / "base" / "deployment.yaml").read_text()


def test_the_entrypoint_is_reconciler_run() -> None:
    _, stages = parse()
    entrypoints = [rest for keyword, rest in stages[-1].instructions if keyword == "ENTRYPOINT"]
    command = json.loads(entrypoints[-1])  # exec form: signals reach the process
    assert command[-2:] == ["reconciler", "run"]
    assert not [rest for keyword, rest in stages[-1].instructions if keyword == "CMD"]


def test_the_image_carries_the_engine_stacks_need() -> None:
    args, stages = parse()
    final = stages[-1]
    tofu = next(s for s in stages if "opentofu" in s.base)
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TOFU_VERSION"])
    assert any(keyword == "COPY" and rest.startswith(f"--from={tofu.name} ")
               and rest.endswith("/usr/local/bin/tofu")
               for keyword, rest in final.instructions)
    env = " ".join(rest for keyword, rest in final.instructions if keyword == "ENV")
    assert "PATH=/opt/reconciler/bin:" in env  # python3 -m reconciler... in runner pods


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        core = pattern[1:] if negate else pattern
        core = core.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, core) or fnmatch.fnmatch(p, core.replace("**/", ""))
               for p in prefixes):
            ignored = not negate
    return ignored


def test_the_build_context_holds_what_the_build_copies() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    _, stages = parse()
    sources: list[str] = []
    for stage in stages:
        for keyword, rest in stage.instructions:
            if keyword == "COPY" and not rest.startswith("--from="):
                sources += shlex.split(rest)[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    package = [str(p.relative_to(REPO)) for p in (REPO / "reconciler").rglob("*.py")]
    assert package
    assert not any(_ignored(p, patterns) for p in package)
    for private in (".venv/bin/python", ".git/config", "tests/__init__.py", ".tools/bin/kubectl"):
        assert _ignored(private, patterns), f"{private} would be sent to the builder"
    # pyproject's readme must be in the context, or building the wheel fails.
    assert 'readme = "README.md"' not in (REPO / "pyproject.toml").read_text() or (
        "README.md" in sources)
