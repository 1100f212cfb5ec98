"""Old spellings that still work for one release, each announced once on stderr.

Kept free of Rich and Typer: the config layer is below the CLI; the note is one plain line,
so scripts that chain commands keep working and their logs say what to change.
"""

from __future__ import annotations

import sys

_SEEN: set[str] = set()


def deprecated(old: str, new: str) -> None:
    """Print ``note: OLD is deprecated; use NEW`` once per process."""
    if old in _SEEN:
        return
    _SEEN.add(old)
    print(f"note: {old} is deprecated and goes away in the next release; use {new}", file=sys.stderr)
