"""The bounds on what one declaration file may hold (DESIGN §7).

Anyone who can push to the declarations repository can push a file meant to hurt the
daemon: a few lines of nested aliases that stand for billions of values, a list nested
thirty thousand deep (which crashes the C YAML composer), a number too large for a
duration, fifty thousand invalid keys. Each bound here is checked before the work it
protects, and breaching one is a located error in that file, never a crash or a stall.
"""

from __future__ import annotations

MAX_FILE_BYTES = 1 << 20
"""A declaration file larger than 1 MiB is refused unread. A repository's biggest honest
declarations (a Task with inline files) are a few kilobytes."""

MAX_DEPTH = 64
"""Collections nested deeper than this (lists in lists, mappings in mappings) are refused,
checked on the parser's events before any node is built: the C composer recurses once per
level and crashes (SIGSEGV) at some thirty thousand, the constructor and the parse cache's
serializer hit Python's recursion limit at a thousand."""

MAX_NODES = 100_000
"""More values than this in one document (aliases expanded) is refused: a few lines of
nested aliases can stand for billions of values, and validating them would never end."""

MAX_DOCUMENTS = 1_000
"""More documents than this in one file is refused."""

MAX_ERRORS_PER_FILE = 50
"""At most this many errors are reported for one file, then one line saying how many more
there are: what a person can act on, and what keeps a hostile file's report small."""

MAX_DURATION_SECONDS = 30 * 24 * 3600
"""Durations (`timeout`, `lockTimeout`) are at most 30 days."""

MAX_QUANTITY = 10**18
"""Resource quantities are at most 1E (10^18 cores, or bytes): what Kubernetes can hold
(its quantities are 64-bit), and beyond anything a node has."""

MAX_QUANTITY_LENGTH = 64
"""A resource quantity is at most this many characters."""

MAX_PATH_BYTES = 4096
MAX_PATH_COMPONENT_BYTES = 255
"""Repository paths in declarations: at most 4096 bytes, 255 per folder or file name (what
Linux file systems accept; longer ones fail every system call with ENAMETOOLONG)."""

MAX_CYCLE_SHOWN = 10
"""A dependency cycle names at most this many of its members. One of at most this many
members is reported at each of them; a larger one once, at its first member, the others
saying where."""
