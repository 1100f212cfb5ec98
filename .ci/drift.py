"""Print how the installed packages differ from constraints.txt (the last tested set).

CI installs the newest releases the ranges in pyproject.toml allow, exactly as the README's test
command does, so a new upstream release that breaks vltool fails CI the day it appears. This
script names what moved since constraints.txt was written, so such a failure points at its cause.
It never fails the run itself.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path


def pinned(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def main() -> int:
    pins = pinned(Path(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt"))
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
    # PEP 440: a pin without a local label (torch==2.13.0) matches any build of it (2.13.0+cpu)
    moved = [(name, want, installed[name]) for name, want in sorted(pins.items())
             if name in installed and installed[name] != want
             and ("+" in want or installed[name].split("+", 1)[0] != want)]
    missing = sorted(set(pins) - set(installed))
    if not moved and not missing:
        print("dependency drift: none (installed = constraints.txt)")
    for name, want, got in moved:
        print(f"dependency drift: {name} {got} installed, constraints.txt tested {want}")
    for name in missing:
        print(f"dependency drift: {name} in constraints.txt is not installed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
