"""Word converter: exact formulas and alignment across tokenizers."""

from __future__ import annotations

import torch
from tiny_tokenizer import word_tokenizer
from torch import nn

from vltool.models.word_converter import ConverterData, align, fit_converter, fit_lstsq, merge_projector


def test_merged_projector_equals_converter_after_source_projector() -> None:
    torch.manual_seed(0)
    g, proj_s = nn.Linear(6, 10), nn.Linear(4, 6)
    merged = merge_projector(g, proj_s)
    x = torch.randn(5, 4)
    assert torch.allclose(merged(x), g(proj_s(x)), atol=1e-6)
    assert merged.weight.shape == (10, 4)


def test_lstsq_recovers_a_known_linear_map_and_sgd_fits_by_cosine() -> None:
    torch.manual_seed(0)
    true = nn.Linear(8, 12)
    src = torch.randn(200, 8)
    with torch.no_grad():
        tgt = true(src)
    g = fit_lstsq(src, tgt, torch.ones(200), ridge=0.0)
    assert torch.allclose(g.weight, true.weight, atol=1e-4) and torch.allclose(g.bias, true.bias, atol=1e-4)
    data = ConverterData(src, tgt, torch.randint(1, 5, (200,)).float(), [str(i) for i in range(200)], 200, 200, "ids")
    _, report = fit_converter(data, "sgd", lr=5.0, epochs=20, batch_tokens=64, held_out=0.1, seed=0)
    assert report["converter_held_out_pairs"] == 20 and report["converter_pairs"] == 180
    assert report["converter_held_out_cos"] > 0.95  # a linear target is fitted in direction


def test_alignment_pairs_ids_for_one_tokenizer_and_words_across_two() -> None:
    tok = word_tokenizer()
    other = word_tokenizer(extra=["zebra"])  # different vocabulary (one more word)
    emb_a, emb_b = torch.randn(len(tok), 4), torch.randn(len(other), 6)
    same = align(["a red circle", "a red square"], tok, tok, emb_a, emb_a)
    assert same.mode == "token ids" and same.keys == ["a", "red", "circle", "square"]
    assert same.counts.tolist() == [2, 2, 1, 1]
    cross = align(["a red circle", "a zebra"], tok, other, emb_a, emb_b)
    assert cross.mode == "words"
    # 'zebra' is unknown to the first tokenizer, so 3 of 4 distinct words align
    assert cross.keys == ["a", "circle", "red"] and (cross.matched, cross.total) == (3, 4)
    a_id = tok.convert_tokens_to_ids("a")
    assert torch.equal(cross.source[0], emb_a[a_id]) and cross.counts[0] == 2
