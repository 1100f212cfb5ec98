"""Unreadable weights (a half-finished download) give one line naming the file, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.run import vltool
from support.tiny_models import opt_lm

from vltool.errors import UserError
from vltool.sources.hf_blip2 import load_causal_lm
from vltool.sources.weight_files import unreadable


def opt_folder(folder: Path, safe: bool = True) -> Path:
    opt_lm(64, 16, 2, layers=1, ffn=32, max_position_embeddings=32).save_pretrained(str(folder), safe_serialization=safe)
    return folder


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_safetensors_and_bin_are_named(tmp_path: Path) -> None:
    folder = opt_folder(tmp_path / "opt")
    assert unreadable(folder / "model.safetensors") is None
    load_causal_lm(folder)
    truncate(folder / "model.safetensors")
    assert "incomplete" in unreadable(folder / "model.safetensors")
    with pytest.raises(UserError, match=r"cannot read the weights in .*model\.safetensors .*download it again"):
        load_causal_lm(folder)

    torch.save({"w": torch.zeros(1000)}, tmp_path / "pytorch_model.bin")
    assert unreadable(tmp_path / "pytorch_model.bin") is None
    truncate(tmp_path / "pytorch_model.bin")
    assert unreadable(tmp_path / "pytorch_model.bin") is not None


def test_truncated_target_is_one_line_at_the_command_line(quick_world: Path, tmp_path: Path) -> None:
    import shutil

    from vltool.demo.home import demo_model_paths

    target = tmp_path / "my-llm"
    shutil.copytree(demo_model_paths(0, quick_world)["demo-opt-l"], target)
    truncate(target / "model.safetensors")
    result = vltool(["warmup", "--src", "demo-blip2-opt-s", "--dst", str(target), "--data", "demo:caption",
                     "--out", str(tmp_path / "w")], home=quick_world, columns=300, module=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"{target / 'model.safetensors'}" in result.stderr.replace("\n", "")
