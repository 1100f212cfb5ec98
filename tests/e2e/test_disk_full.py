"""A full disk (#23): one line naming the filesystem, the path and the bytes needed; exit code 4; the
partial files gone; the last complete checkpoint kept, so ``--resume`` finishes once there is room.

Run on real small filesystems: size-limited tmpfs mounts made by the test, which needs root (and a
kernel that lets it mount); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from support.real_layouts import build_hub_cache
from support.run import vltool

from vltool.artifacts import ArtifactWriter
from vltool.artifacts.disk_space import is_disk_full
from vltool.data import feature_cache
from vltool.errors import DiskFull
from vltool.training.disk_plan import run_bytes, shortfall

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="mounting a size-limited tmpfs needs root")


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def grow(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def test_artifact_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "256k") as fs:
        with pytest.raises(DiskFull) as caught, ArtifactWriter(fs / "art", "vpg") as writer:
            writer.save_tensors("vpg.safetensors", {"w": torch.zeros(200_000)})  # 800 kB
        line = str(caught.value)
        assert "\n" not in line and caught.value.exit_code == 4
        assert f"out of disk space on {fs} writing the artifact {fs}/.tmp-art-" in line
        needed = int(re.search(r"\((\d+) bytes\)", line).group(1))
        assert needed >= 800_000
        assert list(fs.iterdir()) == []  # the temporary folder went


def test_feature_cache_larger_than_the_disk_is_refused_before_writing(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with tmpfs(tmp_path / "home", "128k") as home:
        monkeypatch.setenv("VLTOOL_HOME", str(home))
        accelerator = SimpleNamespace(is_main_process=True, process_index=0, num_processes=1,
                                      wait_for_everyone=lambda: None)
        encoded = []

        def batches(indices):
            return [(indices[:2], torch.zeros(2, 3, 4, 4), [])]

        def encode(pixels):
            encoded.append(len(pixels))
            return torch.zeros(len(pixels), 32, 64)

        with pytest.raises(DiskFull) as caught:
            feature_cache.build(accelerator, "k" * 24, 1000, encode, batches, torch.float16, {})
        size = 1000 * 32 * 64 * 2
        assert f"on {home} writing the feature cache {home}/feature-cache/{'k' * 24}/features.npy: needed" in \
            str(caught.value)
        assert f"({size} bytes)" in str(caught.value)
        assert encoded == [1]  # the shape probe only: no image was encoded for the rows
        assert not (home / "feature-cache" / ("k" * 24)).exists()


def test_the_warning_counts_checkpoints_artifact_and_cache(tmp_path: Path) -> None:
    writes = run_bytes([1000, 50_000], keep=2, artifact_params=50_000)
    assert writes == {"checkpoints": 2 * (1000 * 12 + 65536) + 2 * (50_000 * 12 + 65536),
                      "artifact": 200_000 + (1 << 20)}
    with tmpfs(tmp_path / "fs", "1m") as fs:
        line = shortfall(fs / "out", writes, fs / "cache", 10_000_000)
        assert line is not None and "\n" not in line
        assert line.startswith(f"warning: 1.0 MB free on {fs} for {fs}, but this run writes about 12.7 MB there "
                               "(checkpoints 1.5 MB, artifact 1.2 MB, feature cache 10.0 MB)")
        assert shortfall(fs / "out", {"checkpoints": 1000}) is None


def test_enospc_is_found_in_the_exception_chain() -> None:
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as inner:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 283456 vs 283348") \
                from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(RuntimeError("unexpected pos 1 vs 2"))


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    build_hub_cache(home, only=["Salesforce/blip2-opt-2.7b", "facebook/opt-6.7b"])
    return home


def test_transfer_that_fills_the_disk_at_a_checkpoint_resumes_once_there_is_room(hf_home: Path,
                                                                                  tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for i in range(8):
        Image.new("RGB", (24, 20), (30 * i, 250 - 20 * i, 100)).save(data / f"img{i}.png")
        rows.append({"image": f"img{i}.png", "prompt": "", "answer": ("a red circle on the left",
                                                                      "a big blue square on the right")[i % 2]})
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "VLTOOL_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": None}
    with tmpfs(tmp_path / "fs", "1400k") as fs:
        # every checkpoint is kept (about 400 kB each at stage 2), so the 4th cannot be written
        args = ["transfer", "--src", "opt2.7b", "--dst", "opt6.7b",
                "--data", f"jsonl:{data / 'train.jsonl'}", "--images", str(data), "--out", str(fs / "vpg"),
                "warmup.max_steps=2", "train.max_steps=6", "train.save_every=1", "train.keep_checkpoints=100",
                "train.batch_size=2", "train.precision=no", "train.num_workers=0"]
        full = vltool(args, env=env, columns=400, module=True, timeout=300)
        assert full.returncode == 4, full.stderr[-3000:]
        errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in full.stderr
        assert re.fullmatch(rf"error: out of disk space on {fs} writing checkpoint {fs}/\.vpg\.run/finetune/"
                            r"checkpoints/\.tmp-step_\d{6}: needed \S+ \S+ \(\d+ bytes\), \S+ \S+ free; the last "
                            rf"complete checkpoint {fs}/\.vpg\.run/finetune/checkpoints/step_\d{{6}} is kept: free "
                            r"space and rerun the same command with --resume", errors[0])
        assert "warning: " in full.stderr and f"free on {fs}" in full.stderr  # said before training started
        run = fs / ".vpg.run"
        assert not list(run.rglob(".tmp-*")) and not (fs / "vpg").exists()
        assert [p.name for p in fs.iterdir()] == [".vpg.run"]  # no temp artifact folder either
        kept = sorted(p.name for p in (run / "finetune" / "checkpoints").glob("step_*"))
        assert kept and all((run / "finetune" / "checkpoints" / k / "trainer_state.json").is_file() for k in kept)

        grow(fs, "16m")
        resumed = vltool([*args, "--resume"], env=env, columns=400, module=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        manifest = json.loads((fs / "vpg" / "manifest.json").read_text())
        assert manifest["metrics"]["finetune_steps"] == 6 and not run.exists()
