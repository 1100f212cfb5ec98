"""Reading an HF BLIP-2 folder into parts without its LLM: single, sharded and legacy checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from support.tiny_models import opt_lm, tiny_model, tiny_opt, word_tokenizer
from transformers import BlipImageProcessor

from vltool.errors import UserError
from vltool.sources.hf_blip2 import (
    input_word_embeddings,
    load_blip2_parts,
    read_input_embeddings,
    save_blip2_folder,
)


@pytest.fixture
def blip2_dir(tmp_path: Path) -> tuple[Path, object]:
    model, tok = tiny_model("opt")
    with torch.no_grad():  # a qkv bias with non-zero q and v parts, as a trained EVA ViT has
        bias = model.vision_model.encoder.layers[0].self_attn.qkv.bias
        bias.copy_(torch.cat([torch.randn(32), torch.zeros(32), torch.randn(32)]))
    save_blip2_folder(model, tok, BlipImageProcessor(), tmp_path / "blip2")
    return tmp_path / "blip2", model


def assert_same_parts(parts, model) -> None:
    ours = {**{f"vision_model.{k}": v for k, v in parts.vision_model.state_dict().items()},
            **{f"qformer.{k}": v for k, v in parts.qformer.state_dict().items()},
            **{f"projector.{k}": v for k, v in parts.projector.state_dict().items()}, "query_tokens": parts.query_tokens}
    theirs = {**{f"vision_model.{k}": v for k, v in model.vision_model.state_dict().items()},
              **{f"qformer.{k}": v for k, v in model.qformer.state_dict().items()},
              **{f"projector.{k}": v for k, v in model.language_projection.state_dict().items()},
              "query_tokens": model.query_tokens.detach()}
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key
    assert torch.equal(parts.lm_input_embeddings, model.language_model.get_input_embeddings().weight.detach())


def test_parts_come_back_without_loading_the_llm(blip2_dir: tuple[Path, object]) -> None:
    path, model = blip2_dir
    parts = load_blip2_parts(path)
    assert parts.language_model is None and not any(p.is_meta for p in parts.vision_model.parameters())
    assert_same_parts(parts, model)
    assert parts.tokenizer.convert_tokens_to_ids("<image>") == parts.image_token_index == model.config.image_token_index
    full = load_blip2_parts(path, with_language_model=True)
    assert full.language_model is not None
    assert_same_parts(full, model)


def test_sharded_and_legacy_checkpoints(blip2_dir: tuple[Path, object], tmp_path: Path) -> None:
    path, model = blip2_dir
    sharded = tmp_path / "sharded"
    model.save_pretrained(str(sharded), max_shard_size="50KB")
    for file in path.glob("*.json"):
        if file.name != "config.json" and not (sharded / file.name).exists():
            (sharded / file.name).write_text(file.read_text())
    assert (sharded / "model.safetensors.index.json").is_file()
    assert_same_parts(load_blip2_parts(sharded), model)
    # transformers < 4.3x wrote the ViT's q_bias / v_bias instead of qkv.bias
    tensors = load_file(str(path / "model.safetensors"))
    bias = tensors.pop("vision_model.encoder.layers.0.self_attn.qkv.bias")
    tensors["vision_model.encoder.layers.0.self_attn.q_bias"] = bias[:32].clone()
    tensors["vision_model.encoder.layers.0.self_attn.v_bias"] = bias[64:].clone()
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    assert_same_parts(load_blip2_parts(path), model)
    (path / "model.safetensors").unlink()  # an old pickled pytorch_model.bin (not memory-mappable)
    torch.save(tensors, path / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    assert_same_parts(load_blip2_parts(path), model)
    (path / "pytorch_model.bin").unlink()
    del tensors["query_tokens"]
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match="no query_tokens"):
        load_blip2_parts(path)


def test_input_embeddings_go_through_opt_project_in(tmp_path: Path) -> None:
    tok = word_tokenizer()
    torch.manual_seed(0)
    lm = opt_lm(len(tok), 32, 2, layers=1, word_embed_proj_dim=16, max_position_embeddings=32)
    lm.save_pretrained(str(tmp_path / "opt350m-like"))
    expected = lm.get_input_embeddings().weight.detach() @ lm.model.decoder.project_in.weight.detach().T
    assert expected.shape == (len(tok), 32)
    assert torch.allclose(input_word_embeddings(lm), expected)
    assert torch.allclose(read_input_embeddings(tmp_path / "opt350m-like"), expected)
    plain = tiny_opt(len(tok))
    plain.save_pretrained(str(tmp_path / "plain"))
    assert torch.equal(read_input_embeddings(tmp_path / "plain"), plain.get_input_embeddings().weight.detach())
