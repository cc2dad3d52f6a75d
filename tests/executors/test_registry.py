"""The executor registry: every adapter is found by its name, its flags parse on every
subcommand that takes them, and `--help` lists every name."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from reconciler.cli import build_parser
from reconciler.commands.wiring import settings_from_args
from reconciler.executors import registry
from reconciler.executors.registry import FlagSet

NAMES = registry.names()


def _help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(out.getvalue().split())


def test_the_default_is_registered_and_each_adapter_answers_to_its_name() -> None:
    assert registry.DEFAULT in NAMES
    assert [a.name for a in registry.adapters()] == NAMES
    with pytest.raises(LookupError):
        registry.adapter("nomad")


@pytest.mark.parametrize("command", [("run", "--repo", "x"), ("validate",), ("logs", "task/a")])
def test_help_lists_every_executor(command: tuple[str, ...]) -> None:
    assert "--executor {" + ",".join(NAMES) + "}" in _help(*command)


@pytest.mark.parametrize("name", NAMES)
def test_every_executor_parses_on_the_daemon_and_becomes_its_settings(name: str) -> None:
    for command in (["run", "--repo", "file:///r"], ["drift", "--repo", "file:///r", "stack/a"]):
        args = build_parser().parse_args([*command, "--executor", name])
        settings = settings_from_args(args)
        assert settings.executor == name
        for adapter in registry.adapters():
            own = adapter.settings(args)
            assert settings.of(type(own)) == own


@pytest.mark.parametrize("name", NAMES)
def test_every_executor_parses_on_validate_and_logs(name: str) -> None:
    parser = build_parser()
    assert parser.parse_args(["validate", "--executor", name]).executor == name
    assert parser.parse_args(["logs", "task/a", "--executor", name]).executor == name


@pytest.mark.parametrize("where", list(FlagSet))
def test_each_flag_set_adds_flags_once(where: FlagSet) -> None:
    """Two adapters declaring the same flag in one place would make argparse fail."""
    parser = argparse.ArgumentParser()

    def flag(p: argparse.ArgumentParser, *names: str, **kwargs: object) -> None:
        p.add_argument(*names, **kwargs)  # type: ignore[arg-type]

    registry.add_flags(parser, flag, where)
    parser.parse_args([])


def test_an_adapters_flags_land_in_its_settings() -> None:
    args = build_parser().parse_args([
        "run", "--repo", "file:///r", "--executor", "kubernetes", "--namespace", "runs",
        "--secrets-dir", "/s", "--tofu-bin", "tofu"])
    settings = settings_from_args(args)
    from reconciler.executors.kubernetes.adapter import KubernetesSettings
    from reconciler.executors.local.adapter import LocalSettings

    assert settings.of(KubernetesSettings).namespace == "runs"
    assert str(settings.of(LocalSettings).secrets_dir) == "/s"
    assert settings.of(LocalSettings).tofu_bin == "tofu"


@pytest.mark.parametrize("command", [("run", "--repo", "x"), ("drift", "--repo", "x", "stack/a")])
def test_help_shows_the_engine_fallback(command: tuple[str, ...]) -> None:
    shown = _help(*command)

    assert "--engine-fallback {opentofu,terraform}" in shown
    assert "default: none, such a run fails. [env RECONCILER_ENGINE_FALLBACK]" in shown


@pytest.mark.parametrize("name", NAMES)
def test_the_engine_fallback_reaches_every_executors_settings(name: str) -> None:
    from reconciler.executors.kubernetes.adapter import KubernetesSettings
    from reconciler.executors.local.adapter import LocalSettings

    args = build_parser().parse_args(
        ["run", "--repo", "file:///r", "--executor", name, "--engine-fallback", "terraform"])
    settings = settings_from_args(args)
    strict = settings_from_args(build_parser().parse_args(["run", "--repo", "file:///r"]))

    assert settings.of(LocalSettings).engine_fallback == "terraform"
    assert settings.of(KubernetesSettings).engine_fallback == "terraform"
    assert strict.of(LocalSettings).engine_fallback is None
    assert strict.of(KubernetesSettings).engine_fallback is None


def test_an_engine_fallback_from_the_environment_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """argparse does not check a default against the choices; the settings do."""
    from reconciler.commands.wiring import ConfigError

    monkeypatch.setenv("RECONCILER_ENGINE_FALLBACK", "tofu")
    args = build_parser().parse_args(["run", "--repo", "file:///r"])

    with pytest.raises(ConfigError, match=r"^--engine-fallback: Input should be 'opentofu' or"):
        settings_from_args(args)
