"""The demo world's tiny causal LMs, pre-trained on its text through the shared training loop.

demo-opt-s (OPT, the "OPT-2.7B" source), demo-opt-l (a wider, deeper OPT with the same
tokenizer: the "OPT-6.7B" target) and demo-llama (LLaMA with the BPE tokenizer: the "Vicuna"
target). All are transformers' own classes, saved with ``save_pretrained``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM, PreTrainedModel

from vltool.data.text_batches import IGNORE
from vltool.training.loop import make_accelerator, train
from vltool.training.progress import Reporter
from vltool.training.settings import TrainSettings


@dataclass(frozen=True)
class LMSpec:
    family: str  # "opt" | "llama"
    hidden: int
    layers: int
    heads: int
    ffn: int
    steps: int
    lr: float = 5e-3


LM_SPECS = {
    "demo-opt-s": LMSpec("opt", hidden=64, layers=2, heads=4, ffn=256, steps=450, lr=8e-3),
    "demo-opt-l": LMSpec("opt", hidden=96, layers=3, heads=4, ffn=384, steps=400, lr=8e-3),
    "demo-llama": LMSpec("llama", hidden=96, layers=2, heads=4, ffn=256, steps=400, lr=8e-3),
}


def build_lm(spec: LMSpec, tokenizer) -> PreTrainedModel:
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if spec.family == "opt":
        config = OPTConfig(hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                           num_attention_heads=spec.heads, ffn_dim=spec.ffn, word_embed_proj_dim=spec.hidden,
                           max_position_embeddings=256, dropout=0.0, attention_dropout=0.0, **common)
        return OPTForCausalLM(config)
    config = LlamaConfig(hidden_size=spec.hidden, num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                         num_key_value_heads=spec.heads, intermediate_size=spec.ffn,
                         max_position_embeddings=512, tie_word_embeddings=False, **common)
    return LlamaForCausalLM(config)


class TokenizedDocs(Dataset):
    def __init__(self, docs: Sequence[str], tokenizer, max_len: int = 64) -> None:
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.rows = [([bos] + tokenizer(d, add_special_tokens=False)["input_ids"] + [eos])[:max_len] for d in docs]
        self.pad = tokenizer.pad_token_id

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[int]:
        return self.rows[i]

    def collate(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        labels = ids.masked_fill(mask == 0, IGNORE)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lm_loss(model, batch) -> torch.Tensor:
    return model(**batch).loss


def pretrain_lm(
    name: str, tokenizer, train_docs: Sequence[str], val_docs: Sequence[str], seed: int,
    reporter: Reporter | None = None, steps: int | None = None,
) -> tuple[PreTrainedModel, dict[str, float]]:
    """Pre-train one demo LM; returns it with its validation loss."""
    spec = LM_SPECS[name]
    torch.manual_seed(seed)
    model = build_lm(spec, tokenizer)
    data, val = TokenizedDocs(train_docs, tokenizer), TokenizedDocs(val_docs, tokenizer)

    def evaluate(m, step: int) -> dict[str, float]:
        batch = val.collate(val.rows[:256])
        return {"val_loss": float(m(**batch).loss)}

    settings = TrainSettings(lr=spec.lr, schedule="cosine", warmup_steps=30, min_lr_ratio=0.05,
                             max_steps=steps or spec.steps, batch_size=64, weight_decay=0.01,
                             max_grad_norm=1.0, precision="no", seed=seed, log_every=25)
    result = train(model, lm_loss, data, settings, collate_fn=data.collate, eval_fn=evaluate,
                   reporter=reporter, accelerator=make_accelerator("no", cpu=True), task=f"pre-train {name}")
    model = result.model.eval()
    return model, {**result.final_metrics, "copy_accuracy": copy_accuracy(model, tokenizer, seed)}


@torch.no_grad()
def copy_accuracy(model: PreTrainedModel, tokenizer, seed: int, n: int = 40) -> float:
    """How often the LM's caption after "big red circle left :" names the right attributes.

    The skill a soft visual prompt relies on: an LM that cannot use its context cannot be
    steered by a VPG either (DEMO_NOTES).
    """
    import random

    from vltool.demo.datasets import caption_attributes
    from vltool.demo.world import random_scene

    rng = random.Random(seed + 999)
    right = 0
    for _ in range(n):
        scene = random_scene(rng)
        ids = [tokenizer.bos_token_id] + tokenizer(f"{scene.describe()} :", add_special_tokens=False)["input_ids"]
        out = model.generate(torch.tensor([ids]), max_new_tokens=14, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        named = caption_attributes(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True))
        right += sum(named[k] == v for k, v in scene.attributes().items())
    return right / (4 * n)
