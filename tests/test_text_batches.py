"""Answer-only labels, truncation and padding of (prompt, answer) batches."""

from __future__ import annotations

from tiny_tokenizer import word_tokenizer

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
