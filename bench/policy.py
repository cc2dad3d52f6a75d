"""What the policy adds to a load of 10,000 entries: evaluating every entry once, then only
the entries a change touched; and when a Defaults value denies every entry at once."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.policy.apply import PolicyCheck
from reconciler.policy.file import load_policy
from reconciler.policy.rules import DaemonIdentity

ENTRIES = 10_000
POLICY = """apiVersion: reconciler.io/v1alpha1
kind: Policy
spec:
  namespaces: [runs]
  serviceAccounts: [runner]
  secrets: ["app-*"]
  images: ["registry.example.io/"]
  repositories: ["https://git.example.io/"]
  limits: {timeout: 6h, retries: 10, cpu: "4", memory: 8Gi}
"""


def _task(i: int) -> str:
    return f"""apiVersion: reconciler.io/v1alpha1
kind: Task
metadata:
  name: task-{i}
spec:
  image: registry.example.io/team/app:{i}
  command: [python, run.py]
  serviceAccountName: runner
  secretEnv:
    TOKEN: {{secret: app-token, key: token}}
  repository: {{url: "https://git.example.io/org/app-{i}.git"}}
  resources: {{limits: {{cpu: 500m, memory: 1Gi}}}}
  timeout: 30m
"""


def _timed(action: object, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        for i in range(ENTRIES):
            folder = root / f"f{i % 100}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"task-{i}.yaml").write_text(_task(i))
        (Path(tmp) / "policy.yaml").write_text(POLICY)
        policy = load_policy(Path(tmp) / "policy.yaml")
        identity = DaemonIdentity(namespace="runs")
        loader = DeclarationLoader()
        files = DirectorySource(root)
        start = time.perf_counter()
        desired = loader.load(files)
        print(f"for comparison, the first load of {ENTRIES} entries: "
              f"{(time.perf_counter() - start) * 1000:.0f} ms")
        first = _timed(lambda: PolicyCheck(policy, identity).apply(desired, files))
        check = PolicyCheck(policy, identity)
        check.apply(desired, files)
        changed = root / "f0" / "task-0.yaml"
        changed.write_text(_task(0).replace("timeout: 30m", "timeout: 31m"))
        files = DirectorySource(root)
        desired = loader.load(files)
        again = _timed(lambda: check.apply(desired, files), repeat=1)
        print(f"evaluate {ENTRIES} entries, none denied: {first * 1000:.1f} ms; "
              f"the next load after a one-file change: {again * 1000:.2f} ms")
        (root / "reconciler.yaml").write_text(
            "apiVersion: reconciler.io/v1alpha1\nkind: Defaults\nmetadata: {name: d}\n"
            "spec: {namespace: elsewhere}\n")
        files = DirectorySource(root)
        denied = loader.load(files)
        every = _timed(lambda: PolicyCheck(policy, identity).apply(denied, files), repeat=3)
        check = PolicyCheck(policy, identity)
        result = check.apply(denied, files)
        later = _timed(lambda: check.apply(denied, files))
        print(f"every entry denied by a Defaults namespace ({len(result.invalid)} invalid, "
              f"{len(result.errors)} error line): {every * 1000:.1f} ms first, "
              f"{later * 1000:.1f} ms on a later load")
