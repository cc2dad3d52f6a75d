"""Command line: argument parsing, dispatch and exit codes (DESIGN §4).

Each subcommand lives in `reconciler/commands/<name>.py` as `run(args) -> int`, imported only
when chosen, so `reconciler validate` in a PR check does not load Kubernetes or Git code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from reconciler import __version__
from reconciler.executors import registry
from reconciler.executors.registry import FlagSet

ENV_PREFIX = "RECONCILER_"


class _EnvDefault(argparse.Action):
    """A flag whose default comes from `RECONCILER_<FLAG>` when that variable is set."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        env = ENV_PREFIX + option_strings[-1].lstrip("-").replace("-", "_").upper()
        if env in os.environ:
            value = os.environ[env]
            if kwargs.get("nargs") == 0:
                kwargs["default"] = value.lower() in ("1", "true", "yes", "on")
            else:
                kwargs["default"] = value
            kwargs["required"] = False
        default = kwargs.get("default")
        shown = f" (default: {default})" if default not in (None, False, "") else ""
        kwargs["help"] = (kwargs.get("help") or "") + f"{shown} [env {env}]"
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def _flag(parser: argparse.ArgumentParser, *names: str, **kwargs: Any) -> None:
    if kwargs.pop("switch", False):
        kwargs.update(nargs=0, default=False)
    parser.add_argument(*names, action=_EnvDefault, **kwargs)


def _add_repo_flags(p: argparse.ArgumentParser, *, required: bool) -> None:
    _flag(p, "--repo", required=required, help="Git URL (file, git, http(s), ssh) to reconcile.")
    _flag(p, "--branch", default="main", help="Branch that holds the declarations.")
    _flag(p, "--path", default=".", help="Folder of the declarations inside the repository.")
    _flag(p, "--status-branch", default="reconciler-status", help="Branch status is written to.")
    _flag(p, "--state-dir", default=".reconciler", help="Mirror, journal, logs and stack state.")
    registry.add_flags(p, _flag, FlagSet.DAEMON_FILES)
    _flag(p, "--git-username", help="HTTPS user name.")
    _flag(p, "--git-password-file", help="File holding the HTTPS password or token.")
    _flag(p, "--ssh-key-file", help="Private key for ssh:// remotes.")
    _flag(p, "--known-hosts-file", help="Trusted SSH host keys; unknown hosts are refused.")
    registry.add_executor_flag(p, _flag, help="Where runs go.")
    _flag(p, "--max-parallel", default="4", help="Runs at once (local executor).")
    registry.add_flags(p, _flag, FlagSet.DAEMON_RUNS)
    _flag(p, "--log-format", default="text", choices=["text", "json"], help="Log format.")
    _flag(p, "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR.")
    _add_policy_flags(p)


def _add_policy_flags(p: argparse.ArgumentParser) -> None:
    """The operator's guardrails (docs/policy.md): the same on `run`, `validate` and `render`,
    so a pull request check shows what the daemon would deny."""
    _flag(p, "--policy", help="Policy file: what declarations may ask for (docs/policy.md).")
    _flag(p, "--service-account", default="reconciler",
          help="The daemon's own service account; no declaration may name it.")
    _flag(p, "--reserved-service-accounts", default="reconciler-runner",
          help="Comma-separated privileged service accounts no declaration may name.")
    _flag(p, "--credentials-secret", default="reconciler-credentials",
          help="Secret the daemon's Git credentials and webhook secret come from; no "
          "declaration may use it.")
    _flag(p, "--reserved-secrets", default="",
          help="Comma-separated Secret names or globs no declaration may use.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Run the Tasks and OpenTofu/Terraform Stacks declared in a Git repository.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="Check declarations; exit 1 on any problem.")
    p.add_argument("dir", nargs="?", default=".", help="Repository folder (default: .).")
    p.add_argument("--path", default=".", help="Folder of the declarations inside DIR.")
    p.add_argument("--format", choices=["text", "json", "github", "sarif", "gitlab"],
                   default="text",
                   help="github: GitHub Actions annotations on the offending lines; sarif: "
                   "a SARIF 2.1.0 log for code scanning; gitlab: a GitLab Code Quality "
                   "report.")
    _add_policy_flags(p)
    registry.add_executor_flag(
        p, _flag,
        help="With --policy: the daemon's executor (namespaces count only on Kubernetes).")
    registry.add_flags(p, _flag, FlagSet.POLICY)

    p = sub.add_parser("diff", help="What merging HEAD into BASE would change.")
    p.add_argument("--repo", default=".", help="Local Git repository (default: .).")
    p.add_argument("--base", required=True, help="Base revision, e.g. origin/main.")
    p.add_argument("--head", default="HEAD", help="Head revision (default: HEAD).")
    p.add_argument("--path", default=".", help="Folder of the declarations.")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")

    p = sub.add_parser("schema", help="Write the JSON Schemas of every kind.")
    p.add_argument("--out", required=True, help="Folder to write into.")

    p = sub.add_parser("run", help="The daemon.")
    _add_repo_flags(p, required=True)
    _flag(p, "--interval", default="30s", help="Poll interval, e.g. 30s or 5m.")
    _flag(p, "--listen", default="127.0.0.1:9100", help="HTTP address for metrics and webhooks.")
    _flag(p, "--webhook-secret-file", help="Shared secret of POST /hooks/git.")
    _flag(p, "--api-token-file", help="Bearer token of the control API (/api/v1/); none: off.")
    _flag(p, "--once", switch=True, help="Reconcile until nothing is due, wait, then exit.")
    _flag(p, "--leader-elect", switch=True, help="Kubernetes: run only while holding the Lease.")
    _flag(p, "--leader-election-id", default="reconciler", help="Name of the Lease.")
    _flag(p, "--liveness-timeout", default="15m",
          help="/healthz fails once one reconcile cycle has lasted longer than this.")

    p = sub.add_parser("status", help="The status table from the status branch.")
    p.add_argument("--repo", default=".", help="Repository URL or local folder.")
    p.add_argument("--status-branch", default="reconciler-status")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = sub.add_parser("logs", help="The last run's log of an entry.")
    p.add_argument("entry", metavar="KIND/NAME")
    _flag(p, "--state-dir", default=".reconciler", help="The daemon's state dir.")
    registry.add_executor_flag(p, _flag)
    registry.add_flags(p, _flag, FlagSet.LOGS)

    p = sub.add_parser("drift", help="Run a drift plan of a stack now and write its status.")
    _add_repo_flags(p, required=True)
    p.add_argument("entry", metavar="stack/NAME")

    p = sub.add_parser("render", help="The Kubernetes manifests an entry would run as.")
    p.add_argument("entry", metavar="KIND/NAME")
    p.add_argument("--repo", default=".", help="Repository folder (default: .).")
    p.add_argument("--path", default=".", help="Folder of the declarations.")
    p.add_argument("--namespace", default=None, help="Override the Defaults namespace "
                   "(with --policy, also the daemon's --namespace).")
    _add_policy_flags(p)
    _flag(p, "--source-credentials-secret", help="With --policy: the daemon's flag of that name.")

    p = sub.add_parser("stack-run")  # inside runs: the stack runner; no help, so not listed
    p.add_argument("runner_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from reconciler.logs import setup_logging

    # Commands other than the daemon speak through their output; only warnings go to stderr.
    # `run` and `drift` set the level and format their flags ask for.
    setup_logging("text", "WARNING")
    module = importlib.import_module(f"reconciler.commands.{args.command.replace('-', '_')}")
    try:
        code: int = module.run(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `reconciler render … | head`: the reader is gone, which is not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    sys.exit(code)


if __name__ == "__main__":
    main()
