"""Shared test setup: a private VLTOOL_HOME, no hub access, ever, and the ``world`` mark.

Helpers shared by tests live in the ``support`` package (tests/support, on pytest's pythonpath)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("COLUMNS", "200")
os.environ.setdefault("TERMINAL_WIDTH", "200")

WORLD_FIXTURES = {"quick_world", "quick_world_home"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``world`` every test that needs the quick demo world, so ``-m 'not world'`` is a fast loop.

    Derived from the fixtures a test asks for (directly or through another fixture), so no test can
    forget the mark."""
    for item in items:
        if WORLD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.world)


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
