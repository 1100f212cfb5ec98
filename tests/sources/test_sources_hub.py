"""Hub models by alias or id, with --revision: from the cache, downloaded when online, one line offline.

No network: ``snapshot_download`` / ``list_repo_files`` are replaced by fakes that write a replica
into the cache (tests/real_layouts.py), so the "would download" decision and what follows run here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import real_layouts
from support.real_layouts import build_llama, revision

from vltool.errors import UserError
from vltool.sources import hub_cache
from vltool.sources.resolve import resolve_target


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf" / "hub"


def go_online(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Online, with a fake hub: snapshot_download builds the replica and records its arguments."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls: list[dict] = []

    def fake_download(repo_id: str, revision: str | None = None, cache_dir: str | None = None, **kwargs) -> str:
        calls.append({"repo_id": repo_id, "revision": revision, "cache_dir": cache_dir, **kwargs})
        repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        sha = real_layouts.revision(repo_id)
        if (repo / "snapshots" / sha).is_dir():  # the fake hub has one commit
            return str(repo / "snapshots" / sha)
        return str(build_llama(Path(cache_dir), repo_id, "safetensors"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "list_repo_files",
                        lambda repo_id, revision=None: ["config.json", "model.safetensors", "pytorch_model.bin"])
    return calls


def test_offline_and_missing_is_one_line_with_the_download_command(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("downloaded offline"))
    assert hub_cache.download_decision("lmsys/vicuna-7b-v1.5") == "offline"
    with pytest.raises(UserError) as err:
        resolve_target("lmsys/vicuna-7b-v1.5@abc1234")
    message = str(err.value)
    assert "\n" not in message and "hf download lmsys/vicuna-7b-v1.5 --revision abc1234" in message
    assert "HF_HUB_OFFLINE" in message
    with pytest.raises(UserError, match="vicuna7b-v1.5 means lmsys/vicuna-7b-v1.5.*hf download lmsys/vicuna-7b-v1.5"):
        resolve_target("vicuna7b-v1.5")


def test_online_and_missing_downloads_into_the_cache_once(cache: Path, monkeypatch) -> None:
    calls = go_online(monkeypatch)
    assert hub_cache.download_decision("lmsys/vicuna-7b-v1.5", "main") == "download"
    found = resolve_target("lmsys/vicuna-7b-v1.5", "--dst")
    assert found.model_type == "llama" and found.path.is_relative_to(cache)
    assert calls[0]["repo_id"] == "lmsys/vicuna-7b-v1.5" and calls[0]["cache_dir"] == str(cache)
    assert "*.bin" not in calls[0]["allow_patterns"]  # safetensors on the hub: never both copies
    assert hub_cache.download_decision("lmsys/vicuna-7b-v1.5") == "cached"
    resolve_target("vicuna7b-v1.5")  # the alias now finds the same snapshot; no second download
    resolve_target(f"lmsys/vicuna-7b-v1.5@{revision('lmsys/vicuna-7b-v1.5')}")  # a pinned commit, cached
    assert len(calls) == 1
    resolve_target("lmsys/vicuna-7b-v1.5@v2-tag")  # a revision not in the cache is fetched
    assert calls[-1]["revision"] == "v2-tag" and len(calls) == 2


def test_revisions_resolve_from_refs_and_commits(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = build_llama(cache, "huggyllama/llama-7b", "safetensors")
    sha = snapshot.name
    assert hub_cache.cached_snapshot("huggyllama/llama-7b", revision="main") == snapshot
    assert hub_cache.cached_snapshot("huggyllama/llama-7b", revision=sha) == snapshot
    assert hub_cache.cached_snapshot("huggyllama/llama-7b", revision=sha[:8]) == snapshot
    assert hub_cache.cached_snapshot("huggyllama/llama-7b", revision="other") is None
    assert resolve_target("llama7b@main").path == snapshot
    with pytest.raises(UserError, match="revision other"):
        resolve_target("llama7b@other")
    assert hub_cache.with_revision("llama7b", "main") == "llama7b@main"
    with pytest.raises(UserError, match="give one"):
        hub_cache.with_revision("llama7b@v1", "v2")
    assert hub_cache.split_revision("runs/vpg") == ("runs/vpg", None)


def test_a_missing_local_path_is_not_taken_for_a_hub_id(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="no such file or folder"):
        resolve_target("./runs/vpg")
    with pytest.raises(UserError, match="no such file or folder"):
        resolve_target("ckpt/blip2_pretrained.pth")


def test_revision_flag_pins_the_target_in_the_recipe(cache: Path, monkeypatch) -> None:
    from support.run import invoke

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = invoke(["transfer", "--src", "opt2.7b", "--dst", "vicuna7b", "--revision", "main", "--dry-run"])
    assert "trainable" in result.output.lower()
