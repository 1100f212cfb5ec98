"""Artifacts are written atomically, never overwritten silently, and verified on read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vltool.artifacts import ArtifactWriter, read_artifact
from vltool.artifacts.fingerprint import fingerprint_path, fingerprint_structure, sha256_file
from vltool.errors import UserError


def _write(out: Path, force: bool = False, value: float = 1.0) -> Path:
    with ArtifactWriter(out, "vpg", force=force) as writer:
        writer.save_tensors("vpg.safetensors", {"projector.weight": torch.full((2, 3), value)})
        writer.save_json("configs/projector.json", {"in": 3, "out": 2})
        writer.add_input("dst", "demo-llama", "abc123")
        writer.manifest["metrics"] = {"val_loss": 0.5}
    return out


def test_manifest_lists_every_file_with_its_sha256(tmp_path: Path) -> None:
    out = _write(tmp_path / "art")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "vpg" and manifest["schema_version"] == 1
    assert set(manifest["files"]) == {"vpg.safetensors", "configs/projector.json"}
    assert manifest["files"]["vpg.safetensors"] == sha256_file(out / "vpg.safetensors")
    assert manifest["inputs"]["dst"] == {"source": "demo-llama", "fingerprint": "abc123"}
    # the numbers depend on the library versions too, so the manifest records them
    assert manifest["packages"]["torch"] == torch.__version__ and "transformers" in manifest["packages"]
    art = read_artifact(out, kinds=("vpg",))
    assert torch.equal(art.tensors("vpg.safetensors")["projector.weight"], torch.ones(2, 3))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = _write(tmp_path / "art")
    with pytest.raises(UserError, match="already exists; pass --force"):
        _write(out)
    _write(out, force=True, value=2.0)
    assert read_artifact(out).tensors("vpg.safetensors")["projector.weight"][0, 0] == 2.0


def test_failed_stage_leaves_nothing_and_keeps_the_old_artifact(tmp_path: Path) -> None:
    out = _write(tmp_path / "art")
    with pytest.raises(RuntimeError), ArtifactWriter(out, "vpg", force=True) as writer:
        writer.save_json("half.json", {})
        raise RuntimeError("crash mid-stage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    assert read_artifact(out).tensors("vpg.safetensors")["projector.weight"][0, 0] == 1.0


def test_tampered_or_missing_files_and_wrong_kind_are_named(tmp_path: Path) -> None:
    out = _write(tmp_path / "art")
    with pytest.raises(UserError, match="is a 'vpg' artifact; expected 'adapters'"):
        read_artifact(out, kinds=("adapters",))
    (out / "configs/projector.json").write_text('{"in": 4}')
    with pytest.raises(UserError, match="configs/projector.json does not match its sha256"):
        read_artifact(out)
    _write(out, force=True)
    (out / "vpg.safetensors").unlink()
    with pytest.raises(UserError, match="vpg.safetensors listed in the manifest is missing"):
        read_artifact(out)
    with pytest.raises(UserError, match="has no manifest.json"):
        read_artifact(tmp_path)


def test_fingerprints_change_with_structure(tmp_path: Path) -> None:
    a = fingerprint_structure({"hidden_size": 64}, {"w": (64, 64)})
    assert a == fingerprint_structure({"hidden_size": 64}, {"w": [64, 64]})
    assert a != fingerprint_structure({"hidden_size": 64}, {"w": (64, 32)})
    assert a != fingerprint_structure({"hidden_size": 32}, {"w": (64, 64)})
    out = _write(tmp_path / "art")
    first = fingerprint_path(out)
    (out / "configs/projector.json").write_text('{"in": 5}')
    assert fingerprint_path(out) != first
