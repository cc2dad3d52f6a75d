"""The spec hash decides what runs again: same content, same hash (whichever source it was
read from, whatever the key order, comments or style); a change to anything the run uses,
a different hash."""

from __future__ import annotations

import pygit2
import pytest

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import DesiredState
from reconciler.declarations.loader import DeclarationLoader, load_declarations
from reconciler.source.tree import GitTreeSource
from reconciler.types import EntryId
from tests.declarations.repo import HEADER, MAIN_TF, Repo, stack, task

DEFAULTS = HEADER + "kind: Defaults\nmetadata: {name: d}\nspec: {env: {TZ: UTC}}\n"
REPORT = HEADER + """kind: Task
metadata:
  name: report
  labels: {team: data}
spec:
  command: [python3, report.py]
  env: {REPORT_DAY: monday, LIMIT: 10}
  files:
    report.py: {path: scripts/report.py}
    README: |
      Weekly report.
  dependsOn: [task/prepare, stack/warehouse]
  timeout: 30m
"""
# The same declaration: keys reordered, block style, comments, explicit defaults.
REPORT_RESTYLED = """# The weekly report.
kind: Task   # what it is
spec:
  timeout: 30m
  retries: 0            # the default, written out
  suspend: false
  dependsOn:
    - stack/warehouse
    - task/prepare
  files:
    README: "Weekly report.\\n"
    report.py:
      path: scripts/report.py
  env:
    LIMIT: "10"
    REPORT_DAY: monday
  command:
    - python3
    - report.py
metadata:
  labels:
    team: data
  name: report
apiVersion: reconciler.io/v1alpha1
"""
FILES = {
    "reconciler.yaml": DEFAULTS,
    "tasks/report.yaml": REPORT,
    "tasks/prepare.yaml": task("prepare"),
    "scripts/report.py": "print('report')\n",
    "stacks/warehouse.yaml": stack("warehouse", "stacks/warehouse", "  varFiles: [prod.tfvars]\n"),
    "stacks/warehouse/main.tf": MAIN_TF + 'module "m" {\n  source = "../modules/m"\n}\n',
    "stacks/warehouse/prod.tfvars": 'region = "eu"\n',
    "stacks/modules/m/main.tf": MAIN_TF,
    "tools/run.sh": "#!/bin/sh\necho hi\n",
}


def hashes(desired: DesiredState) -> dict[str, str]:
    assert desired.clean, desired.errors
    return {ident: entry.spec_hash for ident, entry in desired.entries.items()}


def test_same_hash_from_a_folder_and_from_its_commit(repo: Repo) -> None:
    repo.write(FILES)
    (repo.root / "tools/run.sh").chmod(0o755)
    repo.link("stacks/warehouse/shared.tf", "../modules/m/main.tf")
    commit = repo.commit()
    from_disk = load_declarations(DirectorySource(repo.root))
    git_repo = pygit2.Repository(str(repo.root))
    from_git = load_declarations(GitTreeSource(git_repo, commit))
    assert hashes(from_disk) == hashes(from_git)
    assert from_disk.entries == from_git.entries
    # The folder source computes Git's own ids, trees included.
    assert DirectorySource(repo.root).stat(".") is not None
    assert DirectorySource(repo.root).stat(".").oid == repo.git("rev-parse", "HEAD^{tree}")
    for path in ("stacks/warehouse", "tools/run.sh", "stacks/warehouse/shared.tf"):
        assert DirectorySource(repo.root).stat(path).oid == repo.git("rev-parse", f"HEAD:{path}")


def test_key_order_comments_style_and_written_defaults_do_not_matter(repo: Repo) -> None:
    before = hashes(repo.write(FILES).load())
    after = hashes(repo.write({"tasks/report.yaml": REPORT_RESTYLED}).load())
    assert after == before


def changed(repo: Repo, files: dict[str, str | bytes]) -> list[str]:
    before = hashes(repo.load())
    after = hashes(repo.write(files).load())
    return sorted(i for i in after if after[i] != before.get(i))


def test_what_changes_a_hash(repo: Repo) -> None:
    repo.write(FILES)
    assert changed(repo, {"tasks/report.yaml": REPORT.replace("monday", "tuesday")}) == [
        "task/report"]
    assert changed(repo, {"scripts/report.py": "print('report v2')\n"}) == ["task/report"]
    main_tf = str(FILES["stacks/warehouse/main.tf"])
    assert changed(repo, {"stacks/warehouse/main.tf": main_tf + "# edited\n"}) == [
        "stack/warehouse"]
    assert changed(repo, {"stacks/modules/m/main.tf": MAIN_TF + "# edited\n"}) == [
        "stack/warehouse"]
    assert changed(repo, {"reconciler.yaml": DEFAULTS.replace("UTC", "CET")}) == [
        "stack/warehouse", "task/prepare", "task/report"]
    assert changed(repo, {"reconciler.yaml": DEFAULTS.replace("}}", "}, namespace: jobs}")}) == [
        "stack/warehouse", "task/prepare", "task/report"]


def test_what_does_not_change_a_hash(repo: Repo) -> None:
    repo.write(FILES)
    assert changed(repo, {"tasks/report.yaml": REPORT.replace("team: data", "team: bi")}) == []
    assert changed(repo, {"README.md": "# docs\n", "tools/run.sh": "#!/bin/sh\n"}) == []
    assert changed(repo, {"tasks/report.yaml": REPORT.replace(
        "[task/prepare, stack/warehouse]", "[stack/warehouse, task/prepare]")}) == []
    # The built-in runner image is not part of the hash: upgrading reconciler must not
    # re-apply every stack. Choosing one explicitly is.
    terraform = DEFAULTS.replace("}}", "}, runnerImages: {terraform: 'tf:1'}}")
    assert changed(repo, {"reconciler.yaml": terraform}) == []
    opentofu = DEFAULTS.replace("}}", "}, runnerImages: {opentofu: 'tofu:1'}}")
    assert changed(repo, {"reconciler.yaml": opentofu}) == ["stack/warehouse"]


def test_entries_of_a_reloaded_commit_are_identical(repo: Repo) -> None:
    repo.write(FILES)
    commit = repo.commit()
    git_repo = pygit2.Repository(str(repo.root))
    loader = DeclarationLoader()
    first = loader.load(GitTreeSource(git_repo, commit))
    again = loader.load(GitTreeSource(git_repo, commit))
    assert first == again
    assert first.entries[EntryId("task/report")].files["README"] == "Weekly report.\n"


RICH_DEFAULTS = HEADER + """kind: Defaults
metadata: {name: defaults}
spec:
  namespace: jobs
  image: alpine:3
  env: {TZ: UTC}
  resources:
    requests: {cpu: 50m}
  runnerImages: {opentofu: "tofu:1"}
  imagePullSecrets: [registry]
"""


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        pytest.param(DEFAULTS, {
            "stack/warehouse": "c700a5911338c2efdaee1a30e866b989134785f38cafd1e298eaebcc572f6167",
            "task/prepare": "8bcc6bc53b183d4517da9bb3cab1d3b7256f29894fee9d980829e411fd7df1cb",
            "task/report": "f45eac7cb8e81e9c58b7e3cae5e1ccc7886f30c8fbb45c3e1e4acce8924b1c71",
        }, id="defaults"),
        pytest.param(None, {
            "stack/warehouse": "dd8b8422195b7a6668fd3dff24268ffb658fc85512d25a448096ab7bc303e07e",
            "task/prepare": "abb7b24d930f279cc75375183f46ec408d9415a9dac2830839521a8338773733",
            "task/report": "ba8119f5b8dc41eccb48f4412a2411758dbbbf849be38896065a951f89897039",
        }, id="no-defaults"),
        pytest.param(RICH_DEFAULTS, {
            "stack/warehouse": "ba2c0fa2995bc8593a4369b85789402e46805198f031b4aaad9afd2a7665250d",
            "task/prepare": "b21e01da2d7d64501652c8db129d2efd37520859f23a1fc7d768d6534354c109",
            "task/report": "fd639563fc4d5e5e9908cf77244c0201b6b2dfd50d884c104922268fda97b3f6",
        }, id="rich-defaults"),
    ],
)
def test_hashes_do_not_change_between_versions(
    repo: Repo, defaults: str | None, expected: dict[str, str]
) -> None:
    """Every running daemon has recorded these: a new version of reconciler that hashed the
    same declarations differently would run everything again on upgrade."""
    files: dict[str, str | bytes] = {**FILES}
    if defaults is None:
        del files["reconciler.yaml"]
    else:
        files["reconciler.yaml"] = defaults
    assert hashes(repo.write(files).load()) == expected


def test_suspending_and_resuming_keep_the_version(repo: Repo) -> None:
    repo.write(FILES)
    suspended = REPORT.replace("timeout: 30m", "timeout: 30m\n  suspend: true")
    assert changed(repo, {"tasks/report.yaml": suspended}) == []
    assert changed(repo, {"tasks/report.yaml": REPORT}) == []
