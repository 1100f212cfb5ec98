"""Alias registry and offline resolution through the Hugging Face cache layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vltool.errors import UserError
from vltool.sources.aliases import find_alias, list_aliases, register_alias, resolve_alias, unregister_alias
from vltool.sources.hub_cache import cached_snapshot


def fake_snapshot(cache: Path, hub_id: str, sha: str, refs: bool = True, weights: str = "single") -> Path:
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if weights == "single":
        (snapshot / "model.safetensors").write_bytes(b"x")
    elif weights in ("sharded", "partial"):
        shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        (snapshot / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}}))
        for shard in shards[: 1 if weights == "partial" else 2]:
            (snapshot / shard).write_bytes(b"x")
    if refs:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(sha)
    return snapshot


def test_real_alias_resolves_from_hf_home_and_hf_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    old = fake_snapshot(tmp_path / "hf" / "hub", "lmsys/vicuna-7b-v1.1", "aaa", weights="sharded")
    assert resolve_alias("vicuna7b", "target", "--dst") == old
    # HF_HUB_CACHE wins over HF_HOME; a cache copied without refs/ still resolves (newest snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "other"))
    copied = fake_snapshot(tmp_path / "other", "lmsys/vicuna-7b-v1.1", "bbb", refs=False)
    assert resolve_alias("vicuna7b", "target", "--dst") == copied
    assert cached_snapshot("lmsys/vicuna-7b-v1.1", tmp_path / "hf" / "hub") == old


def test_missing_or_incomplete_downloads_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match=r"opt6.7b means Salesforce/blip2-opt-6.7b.*hf download Salesforce/blip2-opt-6.7b"
                                        r".*--src PATH"):
        resolve_alias("opt6.7b", "source", "--src")
    fake_snapshot(tmp_path / "hub", "huggyllama/llama-7b", "ccc", weights="partial")
    with pytest.raises(UserError, match="incomplete"):
        resolve_alias("llama7b", "target", "--dst")
    with pytest.raises(UserError, match="known target alias"):
        resolve_alias("vicuna-7", "target", "--dst")
    with pytest.raises(UserError, match="'demo-blip2-opt-s' is a source alias, not a target alias"):
        resolve_alias("demo-blip2-opt-s", "target", "--dst")


def test_registered_local_aliases_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TEST_ALIAS_HOME", str(tmp_path / "a"))
    import os

    register_alias("test-lm", "target", path=lambda: Path(os.environ["TEST_ALIAS_HOME"]) / "lm",
                   note="test", missing_hint="run the builder first")
    try:
        with pytest.raises(UserError, match="does not exist yet; run the builder first"):
            resolve_alias("test-lm", "target", "--dst")
        (tmp_path / "a" / "lm").mkdir(parents=True)
        (tmp_path / "a" / "lm" / "config.json").write_text("{}")
        assert resolve_alias("test-lm", "target", "--dst") == tmp_path / "a" / "lm"
        row = next(r for r in list_aliases() if r.alias == "test-lm")
        assert (row.role, row.hub_id, row.path, row.present) == ("target", None, tmp_path / "a" / "lm", True)
        register_alias("test-lm", "target", path=tmp_path / "b")  # replaces, does not duplicate
        assert [r.present for r in list_aliases() if r.alias == "test-lm"] == [False]
    finally:
        unregister_alias("test-lm", "target")
    assert find_alias("test-lm", "target") is None
    with pytest.raises(ValueError, match="exactly one"):
        register_alias("x", "target", hub_id="a/b", path=tmp_path)
    rows = {(r.alias, r.role): r for r in list_aliases()}
    assert rows[("opt2.7b", "source")].hub_id == "Salesforce/blip2-opt-2.7b"
    assert rows[("opt2.7b", "target")].hub_id == "facebook/opt-2.7b" and not rows[("opt2.7b", "target")].present
