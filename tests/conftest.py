"""Shared test setup: a private VLTOOL_HOME and no hub access, ever."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("COLUMNS", "200")
os.environ.setdefault("TERMINAL_WIDTH", "200")

TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture
def vltool_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "vltool-home"
    monkeypatch.setenv("VLTOOL_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def quick_world_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick demo world, built once per test session (about 30 s on 2 cores)."""
    from vltool.demo.build import build_world

    home = tmp_path_factory.mktemp("vltool-home")
    build_world(seed=0, home=home, quick=True)
    return home


@pytest.fixture
def quick_world(quick_world_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Demo aliases resolve to the quick world for this test."""
    monkeypatch.setenv("VLTOOL_HOME", str(quick_world_home))
    monkeypatch.setenv("VLTOOL_DEMO_PROFILE", "quick")
    return quick_world_home


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is far faster than two on a shared, busy 2-core CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
