"""Answer-only labels, truncation and padding of (prompt, answer) batches."""

from __future__ import annotations

from support.tiny_models import word_tokenizer

from vltool.data.text_batches import IGNORE, TextEncoder, join_prompt


def test_labels_cover_only_answer_and_eos() -> None:
    tok = word_tokenizer()
    enc = TextEncoder(tok, max_answer_tokens=8)
    batch = enc.training_batch(["question : big ?", ""], ["a red circle", "blue"])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    red = tok.convert_tokens_to_ids("red")
    # row 0: <s> question : big ? | a red circle </s>  -> 5 masked, 4 supervised
    assert ids[0].tolist()[:5] == [bos, *tok.convert_tokens_to_ids(["question", ":", "big", "?"])]
    assert labels[0].tolist() == [IGNORE] * 5 + [tok.convert_tokens_to_ids("a"), red,
                                                  tok.convert_tokens_to_ids("circle"), eos]
    # row 1 (empty prompt, as VPGTrans pre-training): <s> | blue </s> <pad>...
    assert ids[1].tolist()[:3] == [bos, tok.convert_tokens_to_ids("blue"), eos]
    assert labels[1].tolist() == [IGNORE, tok.convert_tokens_to_ids("blue"), eos] + [IGNORE] * 6
    assert mask[1].tolist() == [1, 1, 1] + [0] * 6 and ids[1, 3:].eq(pad).all()


def test_answers_truncate_and_generation_pads_left() -> None:
    enc = TextEncoder(word_tokenizer(), max_answer_tokens=2)
    ids, labels = enc.encode_pair("", "a big red circle")
    assert len(ids) == 4 and labels[1:] == ids[1:]  # <s> a big </s>
    gen = enc.generation_batch(["question : red ?", "a"])
    assert gen["attention_mask"].tolist() == [[1] * 5, [0, 0, 0, 1, 1]]
    assert join_prompt("Answer:", "red") == "Answer: red" and join_prompt("", "red") == "red"


def _newline_bpe():
    """A byte-level BPE that, like OPT's and LLaMA's, has a token of its own for "\\n"."""
    from vltool.demo.tokenizers import train_bpe_tokenizer

    return train_bpe_tokenizer(["a red circle\n", "a big blue square\n", "question : big ? answer\n"] * 20, 120)


def test_captions_end_with_newline_and_generation_stops_there() -> None:
    """VPGTrans / LAVIS: caption + "\\n", generation stops at the "\\n" id; the model's own eos is kept."""
    import pytest
    import torch

    from vltool.data.text_batches import end_of_text_id
    from vltool.errors import UserError
    from vltool.models.vlm import VLTextLayout, stop_ids

    words = word_tokenizer()
    assert end_of_text_id(words, "auto") == end_of_text_id(words, "eos") == words.eos_token_id == \
        end_of_text_id(words, None)  # a word-level tokenizer has no newline: auto falls back to EOS
    with pytest.raises(UserError, match="has no token of its own"):
        end_of_text_id(words, "\n")
    bpe = _newline_bpe()
    newline = end_of_text_id(bpe, "\n")
    assert newline == end_of_text_id(bpe, "auto") != bpe.eos_token_id and bpe.decode([newline]) == "\n"
    layout = VLTextLayout(bpe, 2, 0, end_of_text="\n", prompt="describe :")
    batch = layout.training([""], ["a red circle"])
    labels = [x for x in batch["labels"][0].tolist() if x != IGNORE]
    assert labels[-1] == newline and bpe.eos_token_id not in labels
    assert bpe.decode(labels).strip() == "a red circle"
    # the recipe prompt stands in for samples without one, in training and generation alike
    prompted = layout.generation(["", "question : big ?"])["input_ids"]
    assert bpe.decode(prompted[0]).count("describe") == 1 and "describe" not in bpe.decode(prompted[1])

    class Model:  # a real BLIP-2 OPT folder's generation config: eos 50118 ("\n"), never overridden
        generation_config = type("G", (), {"eos_token_id": 50118})()

    assert stop_ids(Model(), bpe, newline) == [newline, 50118, bpe.eos_token_id]
    assert stop_ids(Model(), bpe) == [50118, bpe.eos_token_id]
    assert isinstance(torch.tensor(stop_ids(Model(), bpe)), torch.Tensor)


def test_eval_prompt_fills_samples_without_one() -> None:
    from vltool.data.sample import Sample
    from vltool.eval.predictors import with_prompt

    samples = [Sample(id="1", image="x.png", prompt="", answer="a"), Sample(id="2", image=None, prompt="q ?", answer="b")]
    out = with_prompt(samples, "a photo of")
    assert [s.prompt for s in out] == ["a photo of", "q ?"] and with_prompt(samples, "") == samples
