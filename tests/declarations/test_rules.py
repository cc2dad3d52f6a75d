"""One row per validation rule: the files a user writes, and exactly what they are told
(`path:line:col: field: message`), pointing at the offending key or value."""

from __future__ import annotations

import pytest

from tests.declarations.repo import HEADER, MAIN_TF, Repo, stack, task

CMD = "  command: [python3, -c, 'print(1)']\n"


def spec_line(line: str) -> dict[str, str | bytes]:
    """tasks/t.yaml whose spec holds `command` (line 6) and `line` (line 7 on)."""
    return {"tasks/t.yaml": task("t", CMD + line)}


FIELD_RULES = [
    pytest.param(
        spec_line("  timeout: 30 minutes\n"),
        "tasks/t.yaml:7:12: spec.timeout: '30 minutes' is not a duration: use whole numbers "
        "with units d, h, m, s, in that order, e.g. 30s, 5m, 1h30m",
        id="duration",
    ),
    pytest.param(
        spec_line("  repository:\n    url: https://git.example.com/app.git\n"
                  "    ref: --upload-pack=touch /tmp/x\n"),
        "tasks/t.yaml:9:10: spec.repository.ref: '--upload-pack=touch /tmp/x' is not a Git "
        "branch, tag or commit: no leading '-', no spaces, '..', '~', '^', ':', '?', '*', '[' "
        "or '\\', not ending in '/', '.' or '.lock'",
        id="git-ref-option",
    ),
    pytest.param(
        spec_line("  repository:\n    url: --config=core.sshCommand=x\n"),
        "tasks/t.yaml:8:10: spec.repository.url: '--config=core.sshCommand=x' is not a Git URL: "
        "it may not begin with '-' or hold spaces or control characters",
        id="git-url-option",
    ),
    pytest.param(
        spec_line("  timeout: 0m\n"),
        "tasks/t.yaml:7:12: spec.timeout: '0m' must be longer than zero",
        id="duration-zero",
    ),
    pytest.param(
        spec_line("  schedule: '0 3 * *'\n"),
        "tasks/t.yaml:7:13: spec.schedule: '0 3 * *' is not a valid cron expression: it has "
        "4 fields; a cron expression has 5: minute hour day-of-month month day-of-week",
        id="cron-fields",
    ),
    pytest.param(
        spec_line("  schedule: '0 24 * * *'\n"),
        "tasks/t.yaml:7:13: spec.schedule: '0 24 * * *' is not a valid cron expression: "
        "Error validating expression '24': the last value (24) is higher than the maximum "
        "value (23)",
        id="cron-value",
    ),
    pytest.param(
        spec_line("  timeZone: Mars/Olympus\n"),
        "tasks/t.yaml:7:13: spec.timeZone: 'Mars/Olympus' is not a known IANA time zone, "
        "e.g. Europe/Berlin or UTC",
        id="time-zone-unknown",
    ),
    pytest.param(
        spec_line("  schedule: '0 3 1 * mon'\n"),
        "tasks/t.yaml:7:13: spec.schedule: '0 3 1 * mon' is not a valid cron expression: it "
        "restricts both day-of-month and day-of-week; cron would run when either matches, "
        "which is rarely what is meant: restrict only one of them",
        id="cron-both-days",
    ),
    pytest.param(
        spec_line("  schedule: '0 3 * * 8'\n"),
        "tasks/t.yaml:7:13: spec.schedule: '0 3 * * 8' is not a valid cron expression: day "
        "of week '8' is not 0-7 (0 and 7 are Sunday) or a name from sun to sat",
        id="cron-weekday",
    ),
    pytest.param(
        spec_line("  resources:\n    limits:\n      memory: 1 gig\n"),
        "tasks/t.yaml:9:15: spec.resources.limits.memory: '1 gig' is not a Kubernetes "
        "resource quantity, e.g. 100m, 0.5, 1, 128Mi, 2Gi",
        id="quantity",
    ),
    pytest.param(
        {"tasks/t.yaml": task("a" * 41)},
        f"tasks/t.yaml:4:9: metadata.name: '{'a' * 41}' is 41 characters long; the limit is 40",
        id="name-length",
    ),
    pytest.param(
        {"tasks/t.yaml": task("Build_Report")},
        "tasks/t.yaml:4:9: metadata.name: 'Build_Report' is not a DNS-1123 label: use "
        "lower-case letters, digits and '-', starting and ending with a letter or digit",
        id="name-dns",
    ),
    pytest.param(
        spec_line("  env:\n    REPORT-DAY: monday\n"),
        "tasks/t.yaml:8:5: spec.env.REPORT-DAY: 'REPORT-DAY' is not a valid environment "
        "variable name: letters, digits and '_', not starting with a digit",
        id="env-name",
    ),
    pytest.param(
        spec_line("  env:\n    VERSION: 1.10\n"),
        "tasks/t.yaml:8:14: spec.env.VERSION: YAML read this value as float 1.1, which may "
        "not be what is written: quote it to keep it as text",
        id="env-float",
    ),
    pytest.param(
        spec_line("  env:\n    DEBUG: true\n"),
        "tasks/t.yaml:8:12: spec.env.DEBUG: True must be a string: quote it",
        id="env-bool",
    ),
    pytest.param(
        spec_line("  dependsOn: [task/a, prepare-data]\n"),
        "tasks/t.yaml:7:23: spec.dependsOn[1]: 'prepare-data' must be written task/NAME or "
        "stack/NAME",
        id="depends-on-format",
    ),
    pytest.param(
        spec_line("  comand: [ls]\n"),
        "tasks/t.yaml:7:3: spec.comand: unknown field; did you mean 'command'?",
        id="unknown-field",
    ),
    pytest.param(
        {"tasks/t.yaml": task("t", "  args: [x]\n")},
        "tasks/t.yaml:5:1: spec.command: is required",
        id="missing-field",
    ),
    pytest.param(
        {"tasks/t.yaml": task("t", CMD) + "  retries: 11\n"},
        "tasks/t.yaml:7:12: spec.retries: Input should be less than or equal to 10, got 11",
        id="range",
    ),
    pytest.param(
        spec_line("  secretEnv:\n    TOKEN: {secret: creds}\n"),
        "tasks/t.yaml:8:5: spec.secretEnv.TOKEN.key: is required",
        id="secret-key-missing",
    ),
    pytest.param(
        spec_line("  tolerations:\n    - operator: Sometimes\n"),
        "tasks/t.yaml:8:17: spec.tolerations[0].operator: Input should be 'Exists' or "
        "'Equal', got 'Sometimes'",
        id="literal",
    ),
    pytest.param(
        spec_line("  files:\n    run.py: {file: scripts/run.py}\n"),
        [
            "tasks/t.yaml:8:5: spec.files[\"run.py\"].path: is required",
            "tasks/t.yaml:8:14: spec.files[\"run.py\"].file: unknown field; expected one of path",
        ],
        id="file-reference-key",
    ),
    pytest.param(
        spec_line("  files:\n    ../run.py: print(1)\n"),
        "tasks/t.yaml:8:5: spec.files[\"../run.py\"]: '../run.py' leaves the repository "
        "('..' is not allowed)",
        id="file-name",
    ),
    pytest.param(
        {"tasks/t.yaml": task("t", extra="  labels: {team: data platform}\n")},
        "tasks/t.yaml:5:18: metadata.labels.team: 'data platform' is not a valid label value "
        "(at most 63 characters)",
        id="label-value",
    ),
    pytest.param(
        {"s.yaml": stack("s", "/srv/stack")},
        "s.yaml:6:9: spec.path: '/srv/stack' is absolute; paths are relative to the "
        "repository root",
        id="path-absolute",
    ),
    pytest.param(
        {"s.yaml": stack("s", "stacks/../../elsewhere")},
        "s.yaml:6:9: spec.path: 'stacks/../../elsewhere' leaves the repository ('..' is not "
        "allowed)",
        id="path-parent",
    ),
    pytest.param(
        {"s.yaml": stack("s", "st", "  apply: always\n"), "st/main.tf": MAIN_TF},
        "s.yaml:7:10: spec.apply: Input should be 'auto' or 'plan', got 'always'",
        id="stack-apply",
    ),
    pytest.param(
        {"s.yaml": stack("s", "st", "  vars:\n    2fast: 1\n"), "st/main.tf": MAIN_TF},
        "s.yaml:8:5: spec.vars[\"2fast\"]: '2fast' is not a valid variable name: letters, digits, "
        "'_' and '-', starting with a letter or '_'",
        id="var-name",
    ),
    pytest.param(
        {"x.yaml": HEADER + "kind: Taks\nmetadata: {name: x}\n"},
        "x.yaml:2:7: kind: unknown kind 'Taks'; expected one of Task, Stack, Defaults (did "
        "you mean 'Task'?)",
        id="unknown-kind",
    ),
    pytest.param(
        {"x.yaml": "# first\n" + HEADER + "metadata: {name: x}\n"},
        "x.yaml:2:1: kind: is required: one of Task, Stack, Defaults",
        id="missing-kind",
    ),
    pytest.param(
        {"x.yaml": "apiVersion: reconciler.io/v1\nkind: Task\n"},
        "x.yaml:1:13: apiVersion: unsupported apiVersion 'reconciler.io/v1'; this reconciler "
        "reads reconciler.io/v1alpha1",
        id="api-version",
    ),
    pytest.param(
        {"x.yaml": task("t", "  command: [python3, -c\n")},
        "x.yaml:7:1: invalid YAML: did not find expected ',' or ']' (while parsing a flow "
        "sequence started on line 6)",
        id="yaml-syntax",
    ),
    pytest.param(
        {"x.yaml": task("t", CMD + "  retries: 1\n  retries: 2\n")},
        "x.yaml:8:3: invalid YAML: found duplicate key \"retries\" with value \"2\" (original "
        "value: \"1\") (while constructing a mapping started on line 6)",
        id="yaml-duplicate-key",
    ),
    pytest.param(
        {"x.yaml": task("t", CMD + "  env: {WHEN: 2026-02-30}\n")},
        "x.yaml:7:15: invalid YAML: cannot read '2026-02-30': day is out of range for month",
        id="yaml-bad-date",
    ),
    pytest.param(
        {"x.yaml": task("t").encode() + b"  args: ['caf\xe9']\n"},
        "x.yaml:7:14: the file is not UTF-8 text",
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("files", "expected"), FIELD_RULES)
def test_field_rule(repo: Repo, files: dict[str, str | bytes], expected: str | list[str]) -> None:
    desired = repo.write(files).load()
    wanted = [expected] if isinstance(expected, str) else expected
    assert [str(e) for e in desired.errors] == wanted
    assert not desired.entries


def both(a: str, b: str) -> list[str]:
    return [a, b]


CROSS_FILE_RULES = [
    pytest.param(
        {"a.yaml": task("report"), "b/c.yaml": "# other\n" + task("report")},
        [
            "a.yaml:4:9: metadata.name: task/report is declared more than once; also at "
            "b/c.yaml:2",
            "b/c.yaml:5:9: metadata.name: task/report is declared more than once; also at "
            "a.yaml:1",
        ],
        id="duplicate",
    ),
    pytest.param(
        {"a.yaml": task("a", CMD + "  dependsOn: [task/prepare]\n")},
        ["a.yaml:7:15: spec.dependsOn[0]: task/prepare is not declared anywhere"],
        id="depends-on-missing",
    ),
    pytest.param(
        {
            "a.yaml": task("a", CMD + "  dependsOn: [task/b]\n"),
            "b.yaml": task("b", CMD + "  dependsOn:\n    - stack/s\n    - task/a\n"),
            "s.yaml": stack("s", "st", "  dependsOn: [task/b]\n"),
            "st/main.tf": MAIN_TF,
        },
        [
            "a.yaml:7:15: spec.dependsOn[0]: dependency cycle: task/a → task/b → task/a",
            "b.yaml:8:7: spec.dependsOn[0]: dependency cycle: task/b → stack/s → task/b",
            "s.yaml:7:15: spec.dependsOn[0]: dependency cycle: stack/s → task/b → stack/s",
        ],
        id="cycle",
    ),
    pytest.param(
        {"a.yaml": task("a", CMD + "  dependsOn: [task/a]\n")},
        ["a.yaml:7:15: spec.dependsOn[0]: dependency cycle: task/a → task/a"],
        id="self-dependency",
    ),
    pytest.param(
        {"s.yaml": stack("s", "stacks/s")},
        ["s.yaml:6:9: spec.path: stacks/s does not exist (stacks is missing)"],
        id="stack-path-missing",
    ),
    pytest.param(
        {"s.yaml": stack("s", "stacks/s"), "stacks/s/README.md": "# s\n"},
        ["s.yaml:6:9: spec.path: stacks/s holds no *.tf file: it is not a Terraform/OpenTofu "
         "root module"],
        id="stack-path-no-tf",
    ),
    pytest.param(
        {"s.yaml": stack("s", "stacks/s/main.tf"), "stacks/s/main.tf": MAIN_TF},
        ["s.yaml:6:9: spec.path: stacks/s/main.tf is not a folder"],
        id="stack-path-file",
    ),
    pytest.param(
        {"s.yaml": stack("s", "st", "  varFiles: [prod.tfvars]\n"), "st/main.tf": MAIN_TF},
        ["s.yaml:7:14: spec.varFiles[0]: st/prod.tfvars does not exist"],
        id="var-file-missing",
    ),
    pytest.param(
        {
            "s.yaml": stack("s", "stacks/s"),
            "stacks/s/main.tf": 'module "m" {\n  source = "../../../outside"\n}\n',
        },
        ["s.yaml:6:9: spec.path: module source '../../../outside' in stacks/s/main.tf leaves "
         "the repository"],
        id="module-outside",
    ),
    pytest.param(
        {
            "s.yaml": stack("s", "stacks/s"),
            "stacks/s/main.tf": 'module "m" {\n  source = "../modules/gone"\n}\n',
        },
        ["s.yaml:6:9: spec.path: module source '../modules/gone' in stacks/s/main.tf: "
         "stacks/modules/gone does not exist (stacks/modules is missing)"],
        id="module-missing",
    ),
    pytest.param(
        {"a.yaml": task("a", CMD + "  files:\n    run.py: {path: scripts/run.py}\n")},
        ["a.yaml:8:20: spec.files[\"run.py\"].path: scripts/run.py does not exist (scripts "
         "is missing)"],
        id="task-file-missing",
    ),
    pytest.param(
        {
            "a.yaml": task("a", CMD + "  files:\n    logo.png: {path: logo.png}\n"),
            "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\xff",
        },
        ["a.yaml:8:22: spec.files[\"logo.png\"].path: logo.png is not UTF-8 text"],
        id="task-file-binary",
    ),
    pytest.param(
        {
            "reconciler.yaml": HEADER + "kind: Defaults\nmetadata: {name: one}\n",
            "more/defaults.yaml": HEADER + "kind: Defaults\nmetadata: {name: two}\n",
        },
        [
            "more/defaults.yaml:2:7: kind: a repository has at most one Defaults; another is "
            "at reconciler.yaml:1",
            "reconciler.yaml:2:7: kind: a repository has at most one Defaults; another is at "
            "more/defaults.yaml:1",
        ],
        id="defaults-twice",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CROSS_FILE_RULES)
def test_cross_file_rule(repo: Repo, files: dict[str, str | bytes], expected: list[str]) -> None:
    desired = repo.write(files).load()
    assert [str(e) for e in desired.errors] == expected


SYMLINK_RULES = [
    pytest.param(
        "stacks/s", "/etc",
        "s.yaml:6:9: spec.path: stacks/s goes through symlink stacks/s pointing outside the "
        "repository",
        id="absolute-target",
    ),
    pytest.param(
        "stacks/s", "../../..",
        "s.yaml:6:9: spec.path: stacks/s goes through symlink stacks/s pointing outside the "
        "repository",
        id="parent-target",
    ),
    pytest.param(
        "stacks", "stacks",
        "s.yaml:6:9: spec.path: stacks/s goes through a symlink loop (stacks)",
        id="loop",
    ),
]


@pytest.mark.parametrize(("link", "target", "expected"), SYMLINK_RULES)
def test_symlink_leaving_the_repository(repo: Repo, link: str, target: str, expected: str) -> None:
    repo.write({"s.yaml": stack("s", "stacks/s")}).link(link, target)
    desired = repo.load()
    assert [str(e) for e in desired.errors] == [expected]


def test_task_file_through_a_symlink_outside(repo: Repo) -> None:
    repo.write({"a.yaml": task("a", CMD + "  files:\n    pw: {path: conf/passwd}\n")})
    repo.link("conf", "/etc")
    assert [str(e) for e in repo.load().errors] == [
        "a.yaml:8:16: spec.files.pw.path: conf/passwd goes through symlink conf pointing "
        "outside the repository"
    ]

