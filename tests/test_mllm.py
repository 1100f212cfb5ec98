"""The assembled MLLM: layout, loss, feature cache, generation, and parity with HF BLIP-2.

The tiny builders here are shared with the other source/model tests (``from test_mllm import``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_tokenizer import word_tokenizer
from torch import nn
from transformers import (
    Blip2ForConditionalGeneration,
    Blip2Processor,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    BlipImageProcessor,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from vltool.models.mllm import (
    IGNORE_INDEX,
    TRANSFER_PARTS,
    WARMUP_PARTS,
    VisionLanguageModel,
    assemble,
    ensure_image_token,
)
from vltool.models.vpg import VisualPromptGenerator

Q = 4
IMAGE = 28


def vision_config(layers: int = 1) -> Blip2VisionConfig:
    return Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                             image_size=IMAGE, patch_size=14, initializer_range=0.02)


def qformer_config(frequency: int = 2) -> Blip2QFormerConfig:
    return Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              encoder_hidden_size=32, cross_attention_frequency=frequency, max_position_embeddings=64,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_vpg(seed: int = 0) -> VisualPromptGenerator:
    return VisualPromptGenerator.from_configs(vision_config(), qformer_config(), Q, seed=seed)


def tiny_opt(vocab: int, seed: int = 0, width: int = 48) -> OPTForCausalLM:
    torch.manual_seed(seed)
    return OPTForCausalLM(OPTConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=2, ffn_dim=64,
                                    num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=width,
                                    dropout=0.0, attention_dropout=0.0, pad_token_id=0, bos_token_id=1,
                                    eos_token_id=2)).eval()


def tiny_llama(vocab: int, seed: int = 0, width: int = 40) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()


def tiny_model(family: str = "opt", seed: int = 0):
    tokenizer = word_tokenizer()
    lm = tiny_opt(len(tokenizer) + 3, seed) if family == "opt" else tiny_llama(len(tokenizer), seed)
    vpg = tiny_vpg(seed)
    projector = nn.Linear(vpg.width, lm.config.hidden_size)
    return assemble(vpg, projector, lm, tokenizer).eval(), tokenizer


def encode(tokenizer, texts: list[str], left: bool = False) -> dict[str, torch.Tensor]:
    rows = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
    width = max(map(len, rows))
    pad = [[tokenizer.pad_token_id] * (width - len(r)) for r in rows]
    ids = [p + r if left else r + p for r, p in zip(rows, pad)]
    mask = [[0] * len(p) + [1] * len(r) if left else [1] * len(r) + [0] * len(p) for r, p in zip(rows, pad)]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_loss_is_the_caption_cross_entropy_and_padding_changes_nothing(family: str) -> None:
    model, tok = tiny_model(family)
    batch = encode(tok, ["a red circle on the left", "a square"])
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    labels[:, :2] = IGNORE_INDEX  # BOS + first word play the prompt
    px = pixels(2)
    out = model(px, batch["input_ids"], batch["attention_mask"], labels)
    assert out.logits.shape[1] == Q + batch["input_ids"].shape[1]
    # loss by hand: next-token CE on caption positions only, visual positions excluded
    logits = out.logits[:, Q:-1]
    target = labels[:, 1:]
    manual = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                         ignore_index=IGNORE_INDEX)
    assert torch.allclose(out.loss, manual, atol=1e-6)
    # the short row alone, unpadded, gives the same logits as inside the right-padded batch
    alone = encode(tok, ["a square"])
    n = alone["input_ids"].shape[1]
    single = model(px[1:], alone["input_ids"], alone["attention_mask"]).logits
    assert torch.allclose(single[0], out.logits[1, :Q + n], atol=1e-5)
    # ... and inside a left-padded batch: [pads][visual][text]
    left = encode(tok, ["a red circle on the left", "a square"], left=True)
    left_logits = model(px, left["input_ids"], left["attention_mask"]).logits
    assert torch.allclose(single[0], left_logits[1, -(Q + n):], atol=1e-5)


def test_feature_cache_gives_the_same_loss_and_is_refused_when_the_vpg_trains() -> None:
    model, tok = tiny_model("opt")
    batch = encode(tok, ["a big blue square"])
    px = pixels(1)
    with torch.no_grad():
        cached = model.encode_images(px)
    assert cached.shape == (1, Q, 32)
    model.set_trainable(WARMUP_PARTS)
    direct = model(px, batch["input_ids"], labels=batch["input_ids"]).loss
    from_cache = model(input_ids=batch["input_ids"], labels=batch["input_ids"], query_output=cached).loss
    assert torch.allclose(direct, from_cache, atol=1e-6)
    from_cache.backward()
    assert model.projector.weight.grad is not None
    model.set_trainable(TRANSFER_PARTS)
    with pytest.raises(ValueError, match="stale"):
        model(input_ids=batch["input_ids"], query_output=cached)


def test_trainable_parts_per_stage() -> None:
    model, _ = tiny_model("opt")
    model.set_trainable(WARMUP_PARTS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"projector.weight", "projector.bias"}
    model.set_trainable(TRANSFER_PARTS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "vpg.query_tokens" in trainable and "vpg.vision_model.post_layernorm.weight" in trainable
    assert not any(n.startswith(("language_model.", "vpg.vision_model.encoder", "vpg.vision_model.embeddings"))
                   for n in trainable)
    model.train()
    assert not model.vpg.vision_model.training and model.vpg.qformer.training  # frozen ViT stays in eval


def test_fresh_vpg_uses_lavis_init() -> None:
    vpg = tiny_vpg()
    assert 0.01 < float(vpg.query_tokens.detach().std()) < 0.03  # normal(0, 0.02), not transformers' zeros
    assert vpg.vision_model.config.initializer_range == 0.02
    assert float(vpg.vision_model.embeddings.position_embedding.detach().std()) > 1e-3  # not the 1e-10 default


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_exported_blip2_folder_gives_the_same_logits_and_generations(family: str, tmp_path: Path) -> None:
    model, tok = tiny_model(family)
    processor = BlipImageProcessor(size={"height": IMAGE, "width": IMAGE})
    out = model.save_blip2(tmp_path / "blip2", tok, processor)
    hf = Blip2ForConditionalGeneration.from_pretrained(str(out)).eval()
    assert hf.config.image_token_index == model.image_token_index == tok.convert_tokens_to_ids("<image>")
    loaded = Blip2Processor.from_pretrained(str(out))
    assert loaded.num_query_tokens == Q
    assert loaded.tokenizer.convert_tokens_to_ids("<image>") == hf.config.image_token_index
    batch = encode(tok, ["a red circle", "a small green square on the right"])
    px = pixels(2, seed=1)
    ours = model(px, **batch).logits
    hf_inputs = model.blip2_inputs(**batch)
    theirs = hf(pixel_values=px, **hf_inputs).logits
    real = hf_inputs["attention_mask"].bool()
    assert torch.allclose(ours[real], theirs[real], atol=1e-5)
    prompt = encode(tok, ["a", "the big"], left=True)
    new = model.generate(px, **prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
    full = hf.generate(pixel_values=px, **model.blip2_inputs(**prompt), max_new_tokens=4, do_sample=False,
                       pad_token_id=0)
    assert torch.equal(new, full[:, -new.shape[1]:])
    back = VisionLanguageModel.from_blip2(hf).eval()
    assert torch.allclose(back(px, **batch).logits[real[:, :]], theirs[real], atol=1e-6)


def test_image_token_uses_a_spare_row_or_grows_the_vocabulary() -> None:
    tok = word_tokenizer()
    spare = tiny_opt(len(tok) + 3)
    assert ensure_image_token(tok, spare) == len(tok) - 1 and spare.get_input_embeddings().num_embeddings == len(tok) + 2
    tok2 = word_tokenizer()
    tight = tiny_llama(len(tok2))
    index = ensure_image_token(tok2, tight)
    assert index == len(tok2) - 1 and tight.get_input_embeddings().num_embeddings == len(tok2)
    assert ensure_image_token(tok2, tight) == index  # idempotent
