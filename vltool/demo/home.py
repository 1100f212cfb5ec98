"""Where vltool keeps what it builds: ``VLTOOL_HOME`` (default: the user's cache dir)."""

from __future__ import annotations

import os
from pathlib import Path

WORLD_VERSION = 3
DEMO_MODELS = ("demo-opt-s", "demo-opt-l", "demo-llama", "demo-blip2-opt-s", "demo-qformer-stage1")


def vltool_home() -> Path:
    if os.environ.get("VLTOOL_HOME"):
        return Path(os.environ["VLTOOL_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "vltool"


def demo_profile() -> str:
    """Which demo world the demo aliases mean: "full" (default) or "quick" (small, for tests and
    ``vltool demo --quick``), from ``VLTOOL_DEMO_PROFILE``."""
    profile = os.environ.get("VLTOOL_DEMO_PROFILE", "full")
    return profile if profile in ("full", "quick") else "full"


def world_dir(seed: int = 0, home: Path | None = None, profile: str | None = None) -> Path:
    suffix = "-quick" if (profile or demo_profile()) == "quick" else ""
    return (home or vltool_home()) / f"demo-world-v{WORLD_VERSION}-seed{seed}{suffix}"


def demo_model_paths(seed: int = 0, home: Path | None = None) -> dict[str, Path]:
    root = world_dir(seed, home)
    return {name: root / "models" / name for name in DEMO_MODELS}


def demo_data_dir(seed: int = 0, home: Path | None = None) -> Path:
    return world_dir(seed, home) / "data"
