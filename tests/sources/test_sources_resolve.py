"""What stands behind --src / --dst: kinds, and the errors for the wrong kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vltool.errors import UserError
from vltool.sources.resolve import SourceKind, classify, resolve_source, resolve_target


def folder(root: Path, name: str, config: dict | None = None, files: dict[str, str] | None = None) -> Path:
    path = root / name
    path.mkdir()
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    for file, text in (files or {}).items():
        (path / file).write_text(text)
    return path


def test_each_kind_is_recognised(tmp_path: Path) -> None:
    blip2 = folder(tmp_path, "blip2", {"model_type": "blip-2"})
    lm = folder(tmp_path, "lm", {"model_type": "opt", "architectures": ["OPTForCausalLM"]}, {"tokenizer.json": "{}"})
    llama = folder(tmp_path, "llama", {"model_type": "llama"}, {"tokenizer.model": ""})
    vpg = folder(tmp_path, "vpg", None, {"manifest.json": json.dumps({"kind": "vpg"})})
    merged = folder(tmp_path, "merged", {"model_type": "blip-2"}, {"manifest.json": json.dumps({"kind": "model"})})
    pth = tmp_path / "blip2_pretrained.pth"
    pth.write_bytes(b"")
    assert resolve_source(str(blip2)).kind is SourceKind.BLIP2
    assert resolve_target(str(lm)).kind is SourceKind.CAUSAL_LM
    assert resolve_target(str(llama)).model_type == "llama"
    found = resolve_source(str(vpg))
    assert found.kind is SourceKind.ARTIFACT and found.artifact_kind == "vpg"
    found = resolve_source(str(merged))
    assert found.kind is SourceKind.BLIP2 and found.artifact_kind == "model"  # a merged model is an HF folder
    assert resolve_source(str(pth)).kind is SourceKind.LAVIS_PTH
    assert classify(blip2, "x", "--src").alias is None


def test_wrong_kinds_and_broken_folders_are_named(tmp_path: Path) -> None:
    blip2 = folder(tmp_path, "blip2", {"model_type": "blip-2"})
    bare = folder(tmp_path, "bare", {"model_type": "opt"})
    clip = folder(tmp_path, "clip", {"model_type": "clip_vision_model"})
    lm = folder(tmp_path, "lm", {"model_type": "opt"}, {"tokenizer.json": "{}"})
    with pytest.raises(UserError, match="--dst .* is a BLIP-2 model"):
        resolve_target(str(blip2))
    with pytest.raises(UserError, match="without a tokenizer"):
        resolve_target(str(bare))
    with pytest.raises(UserError, match="neither BLIP-2 nor a causal LM"):
        resolve_target(str(clip))
    with pytest.raises(UserError, match="is an HF causal-LM folder .* expected an HF BLIP-2 folder"):
        resolve_source(str(lm))
    with pytest.raises(UserError, match="no config.json"):
        resolve_source(str(folder(tmp_path, "empty")))
    with pytest.raises(UserError, match="no such file or folder"):
        resolve_source(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="not a checkpoint"):
        resolve_source(str(tmp_path / "notes.txt"))
    (folder(tmp_path, "badjson") / "config.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        resolve_target(str(tmp_path / "badjson"))


def test_a_bare_alias_name_wins_over_a_same_named_folder_in_the_cwd(tmp_path, monkeypatch) -> None:
    """A stray ./opt6.7b folder must not silently replace the alias; ./opt6.7b names the folder."""
    from vltool.sources.aliases import names_alias

    monkeypatch.chdir(tmp_path)
    (tmp_path / "opt6.7b").mkdir()
    assert names_alias("opt6.7b", "target") and not names_alias("./opt6.7b", "target")
    assert not names_alias("opt6.7b/", "target") and not names_alias("no-such-alias")
    with pytest.raises(UserError, match="opt6.7b") as err:  # the alias is looked up (absent offline), not the folder
        resolve_target("opt6.7b")
    assert "empty" not in str(err.value) and "config.json" not in str(err.value)
    with pytest.raises(UserError, match="config.json|causal LM|not"):
        resolve_target("./opt6.7b")  # the folder itself: an empty folder is refused as such
