"""VPGTrans's word converter: a linear map g from source to target LLM input word embeddings.

Why it exists: the source projector already maps Q-Former outputs into the *source* LLM's word
embedding space; if g maps that space onto the target's, ``g(proj_s(x))`` is a far better start
for the target projector than a random one (``projector_merge``).

What it is fitted on (the paper's choices, PAPERS.md 1): the tokens of the training captions,
lower-cased with punctuation stripped, every occurrence counted, so frequent words weigh more.
- One tokenizer (OPT-2.7B -> OPT-6.7B): token ids pair directly.
- Two tokenizers (OPT -> LLaMA): the official code kept only captions that both tokenizers cut
  into the same number of tokens and paired tokens by position, which silently mispairs and
  drops most data. Here tokens are paired through the WORDS they spell: each caption is
  tokenised whole by both tokenizers (so ids are the in-context ones, e.g. OPT's ``Ġdog``), the
  character offsets assign every token to the word it covers, and a word's embedding on each
  side is the mean of its sub-token embeddings (``pieces="single"`` keeps only words that are a
  single token on both sides). A word that either side spells with an unknown/special token is
  left out; how many words, occurrences and tokens matched is reported.

Two fits: plain SGD on ``1 - cos`` (the official code's: lr 5.0, a batch of 4096 CAPTIONS with
all their tokens -- not 4096 tokens --, 5 epochs same family / 8 across, seed 0) and
frequency-weighted (ridge) least squares in closed form. The converter that is used is fitted on
ALL pairs, as the official code does. How well it generalises is measured on the side: a
separate fit on the pairs outside a held-out split (``held_out`` of the distinct pairs, drawn
with the seed) is scored on the held-out ones -- with a small vocabulary a perfect training fit
says nothing (DEMO_NOTES.md). SGD runs on ``device`` (the accelerator when there is one: a
COCO+SBU-scale fit takes hours on a CPU).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from vltool.models.projector_merge import merge_projector  # noqa: F401  (re-exported: the converter's consumer)
from vltool.sources.hf_blip2 import input_word_embeddings  # noqa: F401  (re-exported: what g maps between)

_NOT_WORD = re.compile(r"[^\w\s]|_")


class RaggedRows(Sequence[list[int]]):
    """Per caption the pair index of each of its tokens, as one flat array plus row lengths.

    A list of Python lists costs about 350 bytes a caption (held two or three times over while
    aligning and fitting), which at COCO + SBU's 1.4M warm-up captions is gigabytes that the
    allocator keeps and forked DataLoader workers inherit (#23); this is 4 bytes a token.
    """

    def __init__(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        self.flat, self.lengths = flat.astype(np.int64, copy=False), lengths.astype(np.int64, copy=False)
        self.starts = np.cumsum(self.lengths) - self.lengths

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> RaggedRows:
        if isinstance(rows, RaggedRows):
            return rows
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths.sum()))
        return cls(flat, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        start = int(self.starts[i])
        return self.flat[start:start + int(self.lengths[i])].tolist()

    def remap(self, position: np.ndarray) -> RaggedRows:
        """Each index through ``position`` (-1 drops it); captions left empty are dropped, as before."""
        mapped = position[self.flat]
        keep = mapped >= 0
        row = np.repeat(np.arange(len(self.lengths)), self.lengths)
        lengths = np.bincount(row[keep], minlength=len(self.lengths))
        return RaggedRows(mapped[keep], lengths[lengths > 0])


@dataclass
class ConverterData:
    """Aligned embedding pairs, their occurrence counts, and how much could be aligned."""

    source: torch.Tensor  # [n, d_src]
    target: torch.Tensor  # [n, d_tgt]
    counts: torch.Tensor  # [n] occurrences in the captions
    keys: list[str]  # the token (same tokenizer) or word (across tokenizers) of each pair
    matched: int  # distinct tokens / words paired
    total: int  # distinct tokens / words seen
    mode: str  # "token ids" | "words"
    stats: dict[str, float] = field(default_factory=dict)
    # per caption, the pair index of each of its tokens (a RaggedRows from ``align``; lists are accepted)
    captions: Sequence[Sequence[int]] = field(default_factory=list)

    def caption_rows(self) -> RaggedRows:
        """Per caption its pairs (with repeats); without caption structure, one row per occurrence."""
        if len(self.captions):
            return RaggedRows.of(self.captions)
        counts = self.counts.long().clamp(min=1).numpy()
        return RaggedRows(np.repeat(np.arange(len(counts)), counts), np.ones(int(counts.sum()), dtype=np.int64))


def normalize_caption(text: str) -> str:
    """Lower-case, punctuation to spaces, single spaces (the paper's caption cleaning)."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def _base_vocab(tokenizer: Any) -> dict[str, int]:
    added = set(tokenizer.get_added_vocab())
    return {k: v for k, v in tokenizer.get_vocab().items() if k not in added}


def same_vocabulary(src_tok: Any, tgt_tok: Any) -> bool:
    """One tokenizer in effect: same base vocabulary (tokens added later, e.g. ``<image>``, aside)."""
    return _base_vocab(src_tok) == _base_vocab(tgt_tok)


def _excluded(tokenizer: Any) -> set[int]:
    return set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())


def _align_ids(texts: Sequence[str], tok: Any, src_emb: torch.Tensor, tgt_emb: torch.Tensor) -> ConverterData:
    # tokenised a few thousand captions at a time into one flat array (no list per caption kept, #23)
    pieces, lengths = [], []
    for start in range(0, len(texts), 4096):
        rows = tok(list(texts[start:start + 4096]), add_special_tokens=False)["input_ids"]
        lengths.append(np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows)))
        pieces.append(np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths[-1].sum())))
    flat, per_caption = np.concatenate(pieces), np.concatenate(lengths)
    counts = np.bincount(flat) if len(flat) else np.zeros(0, dtype=np.int64)
    limit, excluded = min(len(src_emb), len(tgt_emb)), _excluded(tok)
    ids = [i for i in np.flatnonzero(counts).tolist() if i not in excluded and i < limit]
    position = np.full(max(len(counts), 1), -1, dtype=np.int64)
    position[ids] = np.arange(len(ids))
    captions = RaggedRows(flat, per_caption).remap(position)
    index = torch.tensor(ids, dtype=torch.long)
    occurrences = int(counts.sum())
    kept = int(counts[ids].sum()) if ids else 0
    return ConverterData(src_emb[index].float(), tgt_emb[index].float(),
                         torch.tensor(counts[ids] if ids else [], dtype=torch.float),
                         tok.convert_ids_to_tokens(ids), len(ids), int((counts > 0).sum()), "token ids",
                         {"occurrences": float(occurrences), "occurrences_matched": float(kept)}, captions)


def _word_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def word_pieces(tokenizer: Any, text: str) -> list[list[int]]:
    """Token ids of each whitespace word of ``text``, tokenised in context (via character offsets).

    Tokens that cover no word character (a lone SentencePiece ``▁``) belong to no word. Slow
    tokenizers, which give no offsets, tokenise each word on its own (with a leading space
    after the first, as it appears in the caption).
    """
    spans = _word_spans(text)
    pieces: list[list[int]] = [[] for _ in spans]
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        w = 0
        for token_id, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
            while w < len(spans) and spans[w][1] <= start:
                w += 1
            if w < len(spans) and end > start and spans[w][0] < end:
                pieces[w].append(token_id)
        return pieces
    for k, (start, end) in enumerate(spans):
        word = text[start:end] if k == 0 else " " + text[start:end]
        pieces[k] = list(tokenizer(word, add_special_tokens=False)["input_ids"])
    return pieces


def _align_words(texts: Sequence[str], src_tok: Any, tgt_tok: Any, src_emb: torch.Tensor, tgt_emb: torch.Tensor,
                 pieces: str) -> ConverterData:
    src_bad, tgt_bad = _excluded(src_tok), _excluded(tgt_tok)
    if src_tok.unk_token_id is not None:
        src_bad.add(src_tok.unk_token_id)
    if tgt_tok.unk_token_id is not None:
        tgt_bad.add(tgt_tok.unk_token_id)
    pairs: Counter = Counter()
    words: Counter = Counter()
    per_caption: list[list[tuple]] = []
    src_tokens = tgt_tokens = src_used = tgt_used = 0
    for text in texts:
        per_caption.append([])
        for word, s_ids, t_ids in zip(text.split(), word_pieces(src_tok, text), word_pieces(tgt_tok, text)):
            words[word] += 1
            src_tokens += len(s_ids)
            tgt_tokens += len(t_ids)
            ok = (s_ids and t_ids and not (set(s_ids) & src_bad) and not (set(t_ids) & tgt_bad)
                  and max(s_ids) < len(src_emb) and max(t_ids) < len(tgt_emb))
            if ok and (pieces == "mean" or (len(s_ids) == 1 and len(t_ids) == 1)):
                pairs[(word, tuple(s_ids), tuple(t_ids))] += 1
                per_caption[-1].append((word, tuple(s_ids), tuple(t_ids)))
                src_used += len(s_ids)
                tgt_used += len(t_ids)
    if not pairs:
        raise ValueError("no caption word could be spelt by both tokenizers")
    entries = sorted(pairs)
    position = {e: k for k, e in enumerate(entries)}
    captions = RaggedRows.of([[position[e] for e in row] for row in per_caption if row])
    source = torch.stack([src_emb[list(s)].float().mean(0) for _, s, _ in entries])
    target = torch.stack([tgt_emb[list(t)].float().mean(0) for _, _, t in entries])
    matched_words = {w for w, _, _ in entries}
    stats = {"occurrences": float(sum(words.values())), "occurrences_matched": float(sum(pairs.values())),
             "source_tokens": float(src_tokens), "source_tokens_matched": float(src_used),
             "target_tokens": float(tgt_tokens), "target_tokens_matched": float(tgt_used),
             "single_token_pairs": float(sum(1 for _, s, t in entries if len(s) == 1 and len(t) == 1))}
    return ConverterData(source, target, torch.tensor([pairs[e] for e in entries], dtype=torch.float),
                         [w for w, _, _ in entries], len(matched_words), len(words), "words", stats, captions)


def align(captions: Sequence[str], src_tok: Any, tgt_tok: Any, src_emb: torch.Tensor, tgt_emb: torch.Tensor,
          *, normalize: bool = True, pieces: str = "mean") -> ConverterData:
    """Pair source/target embeddings on the captions' tokens (one tokenizer) or words (two)."""
    if pieces not in ("mean", "single"):
        raise ValueError(f"pieces must be 'mean' or 'single', not {pieces!r}")
    texts = [t for t in ((normalize_caption(c) if normalize else c.strip()) for c in captions) if t]
    if not texts:
        raise ValueError("no caption text to fit the word converter on")
    if same_vocabulary(src_tok, tgt_tok):
        return _align_ids(texts, src_tok, src_emb, tgt_emb)
    return _align_words(texts, src_tok, tgt_tok, src_emb, tgt_emb, pieces)


def split_held_out(data: ConverterData, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices over the distinct pairs; nothing is held out below 10 pairs."""
    order = list(range(len(data.keys)))
    random.Random(seed).shuffle(order)
    n_held = int(len(order) * fraction) if len(order) > 10 else 0
    return order[n_held:], order[:n_held]


CHUNK_ROWS = 8192  # token rows per forward/backward inside one SGD step (bounds the fit's memory)


def fit_sgd(src: torch.Tensor, tgt: torch.Tensor, captions: Sequence[Sequence[int]], lr: float, epochs: int,
            batch_captions: int, seed: int) -> nn.Linear:
    """The official fit: plain SGD on mean(1 - cos) over the token occurrences of ``batch_captions``
    captions a step (every token of a caption, so frequent words weigh more), captions shuffled each epoch.

    ``captions``: per caption the row index (into ``src`` / ``tgt``) of each of its tokens.

    Memory does not grow with the data (#23): the captions are held as one flat index plus
    offsets (not one tensor per caption), and a step's tokens go through forward and backward in
    chunks of ``CHUNK_ROWS`` rows whose ``sum(1 - cos) / n`` gradients add up to the step's mean
    (one chunk, the same arithmetic as ``mean``). Before, a step's temporaries grew with its
    token count, up to 4096 captions' worth (a 120 MiB high-water mark at 3000 tiny captions,
    which the CPU allocator keeps and every forked DataLoader worker then inherits).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    g = nn.Linear(src.shape[1], tgt.shape[1]).to(src.device)
    optim = torch.optim.SGD(g.parameters(), lr=lr)
    ragged = RaggedRows.of(captions)
    lengths, flat = torch.from_numpy(ragged.lengths.copy()), torch.from_numpy(ragged.flat.copy())
    keep = torch.nonzero(lengths > 0).flatten()  # empty captions take no part (as before)
    starts = torch.cumsum(lengths, 0) - lengths
    lengths, starts = lengths[keep], starts[keep]
    for _ in range(epochs):
        order = torch.randperm(len(keep), generator=generator)
        for start in range(0, len(order), batch_captions):
            chosen = order[start:start + batch_captions]
            n, first = lengths[chosen], starts[chosen]
            # the flat positions of the chosen captions' tokens, in caption order
            pos = torch.repeat_interleave(first - (torch.cumsum(n, 0) - n), n) + torch.arange(int(n.sum()))
            total = len(pos)
            optim.zero_grad()
            for at in range(0, total, CHUNK_ROWS):
                idx = flat[pos[at:at + CHUNK_ROWS]].to(src.device)
                loss = (1 - nn.functional.cosine_similarity(g(src[idx]), tgt[idx], dim=-1)).sum() / total
                loss.backward()
            optim.step()
    return g.cpu()


def fit_lstsq(src: torch.Tensor, tgt: torch.Tensor, counts: torch.Tensor, ridge: float) -> nn.Linear:
    """Frequency-weighted ridge least squares: min sum_i c_i |W x_i + b - y_i|^2 + ridge |W|^2.

    The bias is not regularised. Without a ridge the minimum-norm solution is taken, so fewer
    pairs than dimensions still give an answer (an exact, and then useless, fit: see the report).
    """
    x = torch.cat([src, torch.ones(len(src), 1, device=src.device)], 1).double().cpu()
    y = tgt.double().cpu()
    w = counts.double().cpu().unsqueeze(1)
    if ridge > 0:
        penalty = ridge * torch.eye(x.shape[1], dtype=torch.float64)
        penalty[-1, -1] = 0.0
        solution = torch.linalg.solve(x.T @ (w * x) + penalty, x.T @ (w * y))
    else:
        root = w.sqrt()
        solution = torch.linalg.lstsq(root * x, root * y, driver="gelsd").solution
    g = nn.Linear(src.shape[1], tgt.shape[1])
    with torch.no_grad():
        g.weight.copy_(solution[:-1].T.float())
        g.bias.copy_(solution[-1].float())
    return g


def mean_cosine(g: nn.Linear, src: torch.Tensor, tgt: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """Mean cosine between g(src) and tgt (weighted by ``weights`` when given); nan when empty."""
    if len(src) == 0:
        return float("nan")
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(g(src.cpu()), tgt.cpu(), dim=-1)
    if weights is None:
        return float(cos.mean())
    return float((cos * weights).sum() / weights.sum())


def _fit(data: ConverterData, keep: list[int], method: str, lr: float, epochs: int, batch_captions: int,
         ridge: float, seed: int, device: str | torch.device | None) -> nn.Linear:
    """Fit g on the pairs ``keep`` (SGD over the captions' occurrences of those pairs)."""
    src, tgt, counts = data.source.detach().float(), data.target.detach().float(), data.counts.float()
    if method == "sgd":
        position = np.full(len(data.keys), -1, dtype=np.int64)
        position[keep] = np.arange(len(keep))
        captions = data.caption_rows().remap(position)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        index = torch.tensor(keep, dtype=torch.long)
        return fit_sgd(src[index].to(dev), tgt[index].to(dev), captions, lr, epochs, batch_captions, seed)
    if method == "lstsq":
        index = torch.tensor(keep, dtype=torch.long)
        return fit_lstsq(src[index], tgt[index], counts[index], ridge)
    raise ValueError(f"unknown converter method {method!r} (sgd or lstsq)")


def fit_converter(data: ConverterData, method: str = "sgd", lr: float = 5.0, epochs: int = 5,
                  batch_captions: int = 4096, ridge: float = 0.0, held_out: float = 0.1, seed: int = 0,
                  device: str | torch.device | None = None) -> tuple[nn.Linear, dict[str, float]]:
    """Fit g on ALL pairs (what is used); report generalisation from a separate held-out split fit.

    With ``held_out`` > 0 (and more than 10 pairs) a first fit leaves ``held_out`` of the distinct
    pairs out and is scored on them (``converter_held_out_cos``); the returned converter is then
    refitted on everything, as the official code fits on all caption tokens. ``device``: where
    SGD runs (the accelerator turns the paper's 8 epochs over COCO+SBU into minutes).
    """
    src, tgt, counts = data.source.detach().float(), data.target.detach().float(), data.counts.float()
    everything = list(range(len(data.keys)))
    train_idx, held_idx = split_held_out(data, held_out, seed)
    ho = torch.tensor(held_idx, dtype=torch.long)
    report: dict[str, float] = {}
    if held_idx:
        split = _fit(data, train_idx, method, lr, epochs, batch_captions, ridge, seed, device)
        report.update({
            "converter_held_out_cos": mean_cosine(split, src[ho], tgt[ho]),
            "converter_held_out_cos_weighted": mean_cosine(split, src[ho], tgt[ho], counts[ho]),
            "converter_split_train_cos": mean_cosine(split, src[torch.tensor(train_idx)], tgt[torch.tensor(train_idx)]),
        })
    else:
        report.update({"converter_held_out_cos": float("nan"), "converter_held_out_cos_weighted": float("nan")})
    g = _fit(data, everything, method, lr, epochs, batch_captions, ridge, seed, device)
    report.update({
        "converter_train_cos": mean_cosine(g, src, tgt),
        "converter_pairs": float(len(everything)),
        "converter_held_out_pairs": float(len(held_idx)),
        "converter_captions": float(len(data.caption_rows())) if data.captions else 0.0,
        "converter_matched": float(data.matched),
        "converter_candidates": float(data.total),
        **{f"converter_{k}": v for k, v in data.stats.items()},
    })
    return g, report


def fit_word_converter(captions: Sequence[str], src_tok: Any, tgt_tok: Any, src_emb: torch.Tensor,
                       tgt_emb: torch.Tensor, *, method: str = "sgd", lr: float = 5.0, epochs: int | None = None,
                       batch_captions: int = 4096, ridge: float = 0.0, held_out: float = 0.1, seed: int = 0,
                       pieces: str = "mean", device: str | torch.device | None = None,
                       ) -> tuple[nn.Linear, dict[str, Any]]:
    """Align on ``captions`` and fit; ``epochs`` defaults to 5 (one tokenizer) or 8 (two), as the paper."""
    data = align(captions, src_tok, tgt_tok, src_emb, tgt_emb, pieces=pieces)
    if epochs is None:
        epochs = 5 if data.mode == "token ids" else 8
    g, report = fit_converter(data, method, lr, epochs, batch_captions, ridge, held_out, seed, device)
    report["converter_alignment"] = data.mode
    report["converter_epochs"] = float(epochs) if method == "sgd" else 0.0
    return g, report
