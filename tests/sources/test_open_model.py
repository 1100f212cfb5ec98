"""``sources.open_model``: the one way every command opens a model (real-layout replicas in an HF cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support.real_layouts import OLD_BLIP2_REVISION, build_hub_cache, offline_hub
from support.run import invoke

from vltool.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    build_hub_cache(home, only=["lmsys/vicuna-7b-v1.1", "facebook/opt-6.7b", "Salesforce/blip2-opt-2.7b",
                                "Salesforce/blip2-opt-2.7b@old"])
    return home


@pytest.fixture
def hub(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_hub(hf_home, monkeypatch)


def test_vicuna_ids_come_from_tokenizer_and_generation_config(hub: Path) -> None:
    """config.json says bos 0 / eos 1 / pad -1; the opened model says 1 / 2 / 0 everywhere."""
    from vltool.sources.open_model import open_target

    opened = open_target("vicuna7b")
    lm, tokenizer = opened.model, opened.tokenizer
    assert json.loads((opened.path / "config.json").read_text())["pad_token_id"] == -1
    assert (lm.config.bos_token_id, lm.config.eos_token_id, lm.config.pad_token_id) == (1, 2, 0)
    assert (lm.generation_config.bos_token_id, lm.generation_config.eos_token_id,
            lm.generation_config.pad_token_id) == (1, 2, 0)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 0)
    assert tokenizer.pad_token == tokenizer.unk_token == "<unk>"
    assert tokenizer.convert_tokens_to_ids("<image>") == opened.image_token_index == len(tokenizer) - 1
    lm.generation_config.validate(strict=True)  # what save_pretrained refused before


def test_opt_keeps_its_own_pad_and_gets_image_in_a_spare_row(hub: Path) -> None:
    from vltool.sources.open_model import open_target

    opened = open_target("opt6.7b")
    assert opened.tokenizer.pad_token == "<pad>" and opened.model.config.pad_token_id == 1
    assert opened.image_token_index < opened.model.get_input_embeddings().num_embeddings


def test_targets_load_in_the_training_dtype_with_one_dimensional_tensors_fp32(hub: Path) -> None:
    from vltool.sources.open_model import open_target

    lm = open_target("vicuna7b", dtype=torch.bfloat16).model
    matrices = {p.dtype for p in lm.parameters() if p.ndim >= 2}
    vectors = {p.dtype for p in lm.parameters() if p.ndim < 2}
    assert matrices == {torch.bfloat16} and vectors == {torch.float32}
    # the grown <image> row is the fp32 mean of the stored rows, rounded once
    rows = lm.get_input_embeddings().weight
    assert torch.equal(rows[-1], rows[:-1].float().mean(0).to(torch.bfloat16))


def test_kinds_are_refused_before_anything_loads(hub: Path) -> None:
    from vltool.sources.open_model import BLIP2, open_model

    with pytest.raises(UserError, match="is a causal LM; expected a BLIP-2 model or vpg artifact"):
        open_model("vicuna7b", "target", "--model", kinds=(BLIP2,))


def test_old_blip2_snapshot_opens_with_image_token_added(hub: Path) -> None:
    from vltool.sources.open_model import BLIP2, open_model

    opened = open_model(f"Salesforce/blip2-opt-2.7b@{OLD_BLIP2_REVISION}", "source")
    assert opened.kind == BLIP2 and "image_token_index" not in json.loads((opened.path / "config.json").read_text())
    assert opened.tokenizer.convert_tokens_to_ids("<image>") == opened.model.config.image_token_index
    # the published text config's stop at "\n" (50118) is kept beside the tokenizer's EOS
    published = json.loads((opened.path / "config.json").read_text())["text_config"]["eos_token_id"]
    assert published != opened.tokenizer.eos_token_id
    assert opened.model.generation_config.eos_token_id == [published, opened.tokenizer.eos_token_id]


def test_bf16_transfer_loads_the_target_in_bf16_and_merges(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           request: pytest.FixtureRequest) -> None:
    """train.precision=bf16: the target is read in bf16 (no fp32 copy), trains, and merges."""
    from accelerate.state import AcceleratorState
    from PIL import Image

    import vltool.sources.open_model as om

    # Accelerate keeps one mixed precision per process: this test switches it, so reset around it
    AcceleratorState._reset_state()
    request.addfinalizer(AcceleratorState._reset_state)
    seen: list[torch.dtype] = []
    real = om._opened_causal_lm

    def spy(found, flag, dtype, image_token):
        seen.append(dtype)
        return real(found, flag, dtype, image_token)

    monkeypatch.setattr(om, "_opened_causal_lm", spy)
    rows = []
    for i, colour in enumerate([(250, 0, 0), (0, 0, 250)]):
        Image.new("RGB", (20, 20), colour).save(tmp_path / f"i{i}.png")
        rows.append({"image": f"i{i}.png", "prompt": "", "answer": "a red circle on the left"})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    vpg = tmp_path / "vpg"
    invoke(["transfer", "--src", "opt2.7b", "--dst", "vicuna7b", "--data", f"jsonl:{data}", "--images",
            str(tmp_path), "--out", str(vpg), "warmup.max_steps=1", "train.max_steps=1", "train.batch_size=2",
            "train.precision=bf16"])
    assert seen[0] == torch.bfloat16
    invoke(["merge", str(vpg), "--out", str(tmp_path / "merged")])
    assert seen[-1] == torch.float32  # merge writes a standalone fp32 folder
