"""Masking cost: `Redactor` over a 10 MB log and the run-log masker fed 64 KiB reads, with 1,
10, 100 and 1000 secrets (each masked in all its printed forms), against one plain alternation
of the same forms (the approach a trie-shaped pattern replaces), timed on 1 MB only."""

from __future__ import annotations

import io
import random
import re
import string
import time

from reconciler.executors.local.masking import MaskingWriter
from reconciler.redact import Redactor, masked_values

LOG_BYTES = 10_000_000
READ = 65536
_ALPHABET = string.ascii_letters + string.digits + '"\\/+=-_'
_WORDS = ("INFO", "resource", "terraform_data.a:", "Creating...", "id=345d688a-3e95", "plan:",
          "1", "to", "add,", "0", "change", "destroy.", "ok", "2026-12-02T02:46:40Z",
          'value="x"', '{"k": 1}')


def _secrets(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(12, 48)))
            for _ in range(count)]


def _log(rng: random.Random, secrets: list[str]) -> str:
    lines, size = [], 0
    while size < LOG_BYTES:
        line = " ".join(rng.choice(_WORDS) for _ in range(12))
        if rng.random() < 0.001:
            line += " " + rng.choice(secrets)
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def _seconds(action: object) -> float:
    assert callable(action)
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _stream(data: bytes, secrets: list[str]) -> None:
    writer = MaskingWriter(io.BytesIO(), secrets)
    for offset in range(0, len(data), READ):
        writer.write(data[offset:offset + READ])
    writer.close()


def main() -> None:
    rng = random.Random(1)
    print("| secrets | forms | build | redact 10 MB | stream 10 MB | plain alternation, 1 MB |")
    print("|---|---|---|---|---|---|")
    for count in (1, 10, 100, 1000):
        secrets = _secrets(rng, count)
        text = _log(rng, secrets)
        redact = Redactor(secrets)
        build = _seconds(lambda: redact.matcher)  # noqa: B023 - called at once
        whole = _seconds(lambda: redact(text))  # noqa: B023
        streamed = _seconds(lambda: _stream(text.encode(), secrets))  # noqa: B023
        plain = re.compile("|".join(map(re.escape, masked_values(secrets))))
        naive = _seconds(lambda: plain.sub("****", text[:1_000_000]))  # noqa: B023
        print(f"| {count} | {len(redact)} | {build:.3f} s | {whole:.2f} s | {streamed:.2f} s "
              f"| {naive:.2f} s |", flush=True)


if __name__ == "__main__":
    main()
