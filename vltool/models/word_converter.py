"""VPGTrans's word converter: a linear map g from source to target input word embeddings.

Fitted on the tokens of the training captions, each occurrence counted, so frequent words weigh
more (the paper's choice). With one tokenizer, token ids pair directly. Across tokenizers the
official code kept only captions both tokenizers split into the same number of tokens; here
pairs are made through the WORDS the captions spell: each word's embedding on either side is
the mean of its sub-token embeddings, which keeps every word both vocabularies can spell.
Two fits: SGD on 1 - cos (the paper's; lr 5, 4096 tokens a batch) and weighted (ridge) least
squares in closed form. The fit is reported as mean cosine on held-out pairs.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ConverterData:
    """Aligned embedding pairs with occurrence counts, and how many could be aligned."""

    source: torch.Tensor  # [n, d_src]
    target: torch.Tensor  # [n, d_tgt]
    counts: torch.Tensor  # [n] occurrences in the captions
    keys: list[str]
    matched: int
    total: int
    mode: str  # "token ids" | "words"


def _word_pieces(tokenizer, word: str) -> list[int]:
    """Ids a tokenizer uses for ``word`` as it appears mid-sentence (after a space)."""
    with_space = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    alone = tokenizer(word, add_special_tokens=False)["input_ids"]
    ids = with_space if with_space else alone
    return [i for i in ids if i != tokenizer.unk_token_id] if tokenizer.unk_token_id is not None else ids


def same_vocabulary(src_tok, tgt_tok) -> bool:
    return src_tok.get_vocab() == tgt_tok.get_vocab()


def align(captions: Sequence[str], src_tok, tgt_tok, src_emb: torch.Tensor, tgt_emb: torch.Tensor) -> ConverterData:
    """Pair source/target embeddings on the captions' tokens (same vocab) or words (different)."""
    if same_vocabulary(src_tok, tgt_tok):
        counts = Counter(i for text in captions for i in src_tok(text, add_special_tokens=False)["input_ids"])
        specials = set(src_tok.all_special_ids)
        ids = sorted(i for i in counts if i not in specials and i < min(len(src_emb), len(tgt_emb)))
        index = torch.tensor(ids)
        return ConverterData(src_emb[index], tgt_emb[index], torch.tensor([counts[i] for i in ids], dtype=torch.float),
                             [src_tok.convert_ids_to_tokens(i) for i in ids], len(ids), len(counts), "token ids")
    words = Counter(w for text in captions for w in text.split())
    rows_s, rows_t, counts, keys = [], [], [], []
    for word, n in sorted(words.items()):
        s_ids, t_ids = _word_pieces(src_tok, word), _word_pieces(tgt_tok, word)
        if not s_ids or not t_ids:
            continue
        rows_s.append(src_emb[s_ids].mean(0))
        rows_t.append(tgt_emb[t_ids].mean(0))
        counts.append(n)
        keys.append(word)
    if not rows_s:
        raise ValueError("no caption word could be spelt by both tokenizers")
    return ConverterData(torch.stack(rows_s), torch.stack(rows_t), torch.tensor(counts, dtype=torch.float), keys,
                         len(keys), len(words), "words")


def split_held_out(data: ConverterData, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(len(data.keys)))
    random.Random(seed).shuffle(order)
    n_held = int(len(order) * fraction) if len(order) > 10 else 0
    return order[n_held:], order[:n_held]


def fit_sgd(src: torch.Tensor, tgt: torch.Tensor, counts: torch.Tensor, lr: float, epochs: int,
            batch_tokens: int, seed: int) -> nn.Linear:
    """The paper's fit: plain SGD on 1 - cos over token occurrences (frequency-weighted)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    g = nn.Linear(src.shape[1], tgt.shape[1])
    optim = torch.optim.SGD(g.parameters(), lr=lr)
    occurrences = torch.repeat_interleave(torch.arange(len(counts)), counts.long().clamp(min=1))
    for _ in range(epochs):
        order = occurrences[torch.randperm(len(occurrences), generator=generator)]
        for start in range(0, len(order), batch_tokens):
            idx = order[start:start + batch_tokens]
            loss = (1 - nn.functional.cosine_similarity(g(src[idx]), tgt[idx], dim=-1)).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
    return g


def fit_lstsq(src: torch.Tensor, tgt: torch.Tensor, counts: torch.Tensor, ridge: float) -> nn.Linear:
    """Frequency-weighted ridge least squares in closed form: min sum_i c_i |W x_i + b - y_i|^2."""
    x = torch.cat([src, torch.ones(len(src), 1)], 1).double()
    w = counts.double().unsqueeze(1)
    gram = x.T @ (w * x) + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    solution = torch.linalg.solve(gram, x.T @ (w * tgt.double()))  # [d_src + 1, d_tgt]
    g = nn.Linear(src.shape[1], tgt.shape[1])
    with torch.no_grad():
        g.weight.copy_(solution[:-1].T.float())
        g.bias.copy_(solution[-1].float())
    return g


def mean_cosine(g: nn.Linear, src: torch.Tensor, tgt: torch.Tensor) -> float:
    if len(src) == 0:
        return float("nan")
    with torch.no_grad():
        return float(nn.functional.cosine_similarity(g(src), tgt, dim=-1).mean())


def fit_converter(data: ConverterData, method: str = "sgd", lr: float = 5.0, epochs: int = 5,
                  batch_tokens: int = 4096, ridge: float = 0.0, held_out: float = 0.1,
                  seed: int = 0) -> tuple[nn.Linear, dict[str, float]]:
    """Fit g on the training pairs; report the fit on training and held-out pairs."""
    train_idx, held_idx = split_held_out(data, held_out, seed)
    src, tgt, counts = data.source.detach().float(), data.target.detach().float(), data.counts
    tr = torch.tensor(train_idx)
    if method == "sgd":
        g = fit_sgd(src[tr], tgt[tr], counts[tr], lr, epochs, batch_tokens, seed)
    elif method == "lstsq":
        g = fit_lstsq(src[tr], tgt[tr], counts[tr], ridge)
    else:
        raise ValueError(f"unknown converter method {method!r}")
    ho = torch.tensor(held_idx, dtype=torch.long)
    report = {
        "converter_train_cos": mean_cosine(g, src[tr], tgt[tr]),
        "converter_held_out_cos": mean_cosine(g, src[ho], tgt[ho]),
        "converter_pairs": float(len(train_idx)),
        "converter_held_out_pairs": float(len(held_idx)),
        "converter_matched": float(data.matched),
        "converter_candidates": float(data.total),
    }
    return g, report


def merge_projector(converter: nn.Linear, source_projector: nn.Linear) -> nn.Linear:
    """proj_t(x) = g(proj_s(x)): W_t = W_g @ W_s, b_t = W_g @ b_s + b_g (PAPERS.md 1)."""
    merged = nn.Linear(source_projector.in_features, converter.out_features)
    with torch.no_grad():
        merged.weight.copy_(converter.weight @ source_projector.weight)
        merged.bias.copy_(converter.weight @ source_projector.bias + converter.bias)
    return merged
