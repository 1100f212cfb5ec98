"""Word converter and projector merge: exact formulas, frequency weighting, alignment across tokenizers."""

from __future__ import annotations

import torch
from support.tiny_models import word_tokenizer
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn
from transformers import PreTrainedTokenizerFast

from vltool.models.projector_merge import merge_projector
from vltool.models.word_converter import (
    ConverterData,
    align,
    fit_converter,
    fit_lstsq,
    fit_word_converter,
    normalize_caption,
    word_pieces,
)

CORPUS = ["a red circle on the left", "a big blue square", "the small green triangle is right of the circle",
          "two red squares and a blue circle", "a tiny yellow star above the square"] * 20


def bpe_tokenizer(style: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """A real sub-word tokenizer trained in memory: GPT-2-like (byte-level, Ġ) or SentencePiece-like (▁)."""
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    if style == "bytelevel":
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        core.pre_tokenizer = pre_tokenizers.Metaspace()
        core.decoder = decoders.Metaspace()
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=alphabet)
    core.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def test_merged_projector_equals_converter_after_source_projector() -> None:
    torch.manual_seed(0)
    g, proj_s = nn.Linear(6, 10), nn.Linear(4, 6)
    merged = merge_projector(g, proj_s)
    x = torch.randn(5, 4)
    assert torch.allclose(merged(x), g(proj_s(x)), atol=1e-6)
    assert merged.weight.shape == (10, 4)
    assert torch.allclose(merged.weight, g.weight @ proj_s.weight, atol=1e-6)
    assert torch.allclose(merged.bias, g.weight @ proj_s.bias + g.bias, atol=1e-6)


def test_lstsq_recovers_a_known_linear_map_and_sgd_fits_by_cosine() -> None:
    torch.manual_seed(0)
    true = nn.Linear(8, 12)
    src = torch.randn(200, 8)
    with torch.no_grad():
        tgt = true(src)
    g = fit_lstsq(src, tgt, torch.ones(200), ridge=0.0)
    assert torch.allclose(g.weight, true.weight, atol=1e-4) and torch.allclose(g.bias, true.bias, atol=1e-4)
    data = ConverterData(src, tgt, torch.randint(1, 5, (200,)).float(), [str(i) for i in range(200)], 200, 200, "ids")
    _, report = fit_converter(data, "sgd", lr=5.0, epochs=20, batch_captions=64, held_out=0.1, seed=0)
    # the converter used is fitted on all 200 pairs; 20 are held out of a separate fit that is scored on them
    assert report["converter_held_out_pairs"] == 20 and report["converter_pairs"] == 200
    assert report["converter_held_out_cos"] > 0.95  # a linear target is fitted in direction
    assert report["converter_train_cos"] > 0.95


def test_sgd_batches_whole_captions_and_the_final_fit_uses_every_pair() -> None:
    """Official batch: N captions with all their tokens; the returned g is the all-pairs refit."""
    from vltool.models.word_converter import fit_sgd

    torch.manual_seed(2)
    src, tgt = torch.randn(40, 6), torch.randn(40, 5)
    data = ConverterData(src, tgt, torch.ones(40), [str(i) for i in range(40)], 40, 40, "ids",
                         captions=[[i, (i + 1) % 40, (i + 7) % 40] for i in range(40)])
    g, report = fit_converter(data, "sgd", lr=1.0, epochs=2, batch_captions=8, held_out=0.25, seed=0)
    again = fit_sgd(src, tgt, data.captions, 1.0, 2, 8, 0)
    assert torch.allclose(g.weight, again.weight) and torch.allclose(g.bias, again.bias)
    assert report["converter_held_out_pairs"] == 10 and report["converter_captions"] == 40
    # one step = one batch of captions: 40 captions / 8 a batch = 5 steps an epoch
    steps = []
    original = torch.optim.SGD.step

    def counting(self, *args, **kwargs):
        steps.append(1)
        return original(self, *args, **kwargs)

    torch.optim.SGD.step = counting
    try:
        fit_sgd(src, tgt, data.captions, 1.0, 2, 8, 0)
    finally:
        torch.optim.SGD.step = original
    assert len(steps) == 10


def test_counts_weigh_like_repeated_occurrences() -> None:
    torch.manual_seed(1)
    src, tgt = torch.randn(30, 5), torch.randn(30, 7)  # not linear: the weights matter
    counts = torch.randint(1, 4, (30,)).float()
    weighted = fit_lstsq(src, tgt, counts, ridge=0.1)
    index = torch.repeat_interleave(torch.arange(30), counts.long())
    repeated = fit_lstsq(src[index], tgt[index], torch.ones(len(index)), ridge=0.1)
    assert torch.allclose(weighted.weight, repeated.weight, atol=1e-5)
    assert torch.allclose(weighted.bias, repeated.bias, atol=1e-5)


def test_alignment_pairs_ids_for_one_tokenizer_and_words_across_two() -> None:
    tok = word_tokenizer()
    other = word_tokenizer(extra=["zebra"])  # different vocabulary (one more word)
    emb_a, emb_b = torch.randn(len(tok), 4), torch.randn(len(other), 6)
    same = align(["A red circle.", "a red square"], tok, tok, emb_a, emb_a)  # lower-cased, punctuation stripped
    assert same.mode == "token ids" and same.keys == ["a", "red", "circle", "square"]
    assert same.counts.tolist() == [2, 2, 1, 1]
    cross = align(["a red circle", "a zebra"], tok, other, emb_a, emb_b)
    assert cross.mode == "words"
    # 'zebra' is unknown to the first tokenizer, so 3 of 4 distinct words align
    assert cross.keys == ["a", "circle", "red"] and (cross.matched, cross.total) == (3, 4)
    a_id = tok.convert_tokens_to_ids("a")
    assert torch.equal(cross.source[0], emb_a[a_id]) and cross.counts[0] == 2
    assert cross.stats["occurrences"] == 5 and cross.stats["occurrences_matched"] == 4


def test_sub_word_tokenizers_align_through_the_words_they_spell() -> None:
    gpt = bpe_tokenizer("bytelevel", 300)  # small vocabularies: most words are split into pieces
    spm = bpe_tokenizer("metaspace", 45)
    assert normalize_caption("Two RED squares, and a blue-circle!") == "two red squares and a blue circle"
    text = "a tiny yellow star above the square"
    for tok in (gpt, spm):
        pieces = word_pieces(tok, text)
        spelled = [tok.decode(p).strip() for p in pieces]
        assert spelled == text.split()
    assert any(len(p) > 1 for p in word_pieces(spm, text))
    emb_g, emb_s = torch.randn(len(gpt), 8), torch.randn(len(spm), 6)
    data = align(CORPUS, gpt, spm, emb_g, emb_s)
    assert data.mode == "words" and data.matched == data.total == len({w for c in CORPUS for w in c.split()})
    star = data.keys.index("star")
    g_ids = word_pieces(gpt, "the star")[1]  # in context: after a space
    s_ids = word_pieces(spm, "the star")[1]
    assert torch.allclose(data.source[star], emb_g[g_ids].mean(0)) and torch.allclose(data.target[star], emb_s[s_ids].mean(0))
    assert data.stats["source_tokens_matched"] == data.stats["source_tokens"]
    single = align(CORPUS, gpt, spm, emb_g, emb_s, pieces="single")
    assert 0 < len(single.keys) < len(data.keys) and single.stats["single_token_pairs"] == len(single.keys)


def test_fit_word_converter_defaults_to_the_papers_epochs_and_reports_the_fit() -> None:
    tok = word_tokenizer()
    emb = torch.randn(len(tok), 6)
    captions = [c.replace("triangle", "circle").replace("two", "a") for c in CORPUS]
    _, same = fit_word_converter(captions, tok, tok, emb, emb * 2 + 1, held_out=0.0)
    assert same["converter_alignment"] == "token ids" and same["converter_epochs"] == 5
    assert same["converter_train_cos"] > 0.9  # an affine target, 5 epochs of SGD over ~600 occurrences
    gpt, spm = bpe_tokenizer("bytelevel", 300), bpe_tokenizer("metaspace", 45)
    _, cross = fit_word_converter(CORPUS, gpt, spm, torch.randn(len(gpt), 8), torch.randn(len(spm), 6),
                                  method="lstsq", ridge=1.0)
    assert cross["converter_alignment"] == "words" and cross["converter_held_out_pairs"] >= 1
    assert -1.0 <= cross["converter_held_out_cos"] <= 1.0
