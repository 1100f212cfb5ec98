"""vltool's MMA token ids against LaVIN's own construction, on a LLaMA SentencePiece tokenizer.

LaVIN (github.com/luogen1996/LaVIN@dd0a1bf) builds a row from its sentencepiece ``Tokenizer``
(``lavin/tokenizer.py``: ``sp_model.encode`` plus BOS / EOS ids): ``util/datasets.py`` encodes
``prompt + answer`` as one string with BOS and EOS and masks ``len(encode(prompt, bos=True))``
labels; ``engine.py`` encodes ``"Image: "`` (image rows) or ``"Image: N/A"`` (text rows) alone;
``lavin/model.py`` ``insert_image_embeds`` puts that prefix and the visual tokens right after BOS.
The expected ids below are built that way from the raw ``sentencepiece`` processor, independently
of transformers; vltool's come from its collator over the transformers tokenizer of the same
``tokenizer.model`` (a Vicuna / LLaMA folder's layout), without and with ``<image>`` in the
vocabulary (CLIP front end; Q-Former front end, whose string a merged folder is prompted with).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.tiny_models import llama_tokenizer_folder

from vltool.data.specs import load_spec
from vltool.models.mma.layout import IGNORE, IMAGE_TOKEN, VISUAL, MMACollator, image_prompt

N_VISUAL = 3
PROMPT = "Question: Which is a state?\nContext: N/A\nOptions: (A) Paris (B) Texas\nResponse:"
ANSWER = "The answer is B. BECAUSE: Texas is a state."


@pytest.fixture(scope="module")
def llama_tokenizers(tmp_path_factory):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    texts = [PROMPT + ANSWER, "Image: N/A", "The answer is A. BECAUSE: Mammals have fur.", "Which is a mammal?"]
    folder = llama_tokenizer_folder(tmp_path_factory.mktemp("llama-tok"), texts)
    return AutoTokenizer.from_pretrained(folder), spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))


def official(sp, has_image: bool, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """LaVIN's (ids, labels) of one row, with VISUAL in the visual-token slots."""
    bos, eos = sp.bos_id(), sp.eos_id()
    example = [bos] + sp.encode(prompt + answer) + [eos]
    prompt_len = len([bos] + sp.encode(prompt))
    head = sp.encode("Image: ") + [VISUAL] * N_VISUAL if has_image else sp.encode("Image: N/A")
    ids = example[:1] + head + example[1:]
    labels = [IGNORE] * (1 + len(head) + prompt_len - 1) + example[prompt_len:]
    return ids, labels


@pytest.mark.parametrize("with_image_token", [False, True])
@pytest.mark.parametrize("has_image", [True, False])
def test_rows_equal_lavins_ids(llama_tokenizers, has_image: bool, with_image_token: bool) -> None:
    tok, sp = llama_tokenizers
    if with_image_token:
        tok = type(tok).from_pretrained(tok.name_or_path)
        tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    collator = MMACollator(tok, N_VISUAL)
    assert collator.encode(has_image, PROMPT, ANSWER) == official(sp, has_image, PROMPT, ANSWER)
    # generation: the prompt alone, as LaVIN's generator encodes it (lavin/generator.py)
    ids, labels = collator.encode(has_image, PROMPT, None)
    assert ids == official(sp, has_image, PROMPT, "")[0][:-1] and set(labels) == {IGNORE}


def test_image_prefix_has_lavins_trailing_space(llama_tokenizers) -> None:
    """"Image: " is one token more than "Image:" on LLaMA's tokenizer: the row must carry it."""
    tok, sp = llama_tokenizers
    assert len(sp.encode("Image: ")) == len(sp.encode("Image:")) + 1
    ids, _ = MMACollator(tok, N_VISUAL).encode(True, PROMPT, ANSWER)
    assert ids[1:ids.index(VISUAL)] == sp.encode("Image: ")


def test_merged_prompt_string_gives_the_trained_ids(llama_tokenizers) -> None:
    """A merged Q-Former MMA folder is prompted with ``image_prompt``: plain tokenisation of it (BOS
    added by the tokenizer) gives the ids vltool trains and generates with, i.e. LaVIN's."""
    tok, sp = llama_tokenizers
    tok = type(tok).from_pretrained(tok.name_or_path)
    tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    plain = tok(image_prompt(PROMPT, N_VISUAL))["input_ids"]
    expected = official(sp, True, PROMPT, "")[0][:-1]
    assert [VISUAL if i == image_id else i for i in plain] == expected


def test_scienceqa_rows_in_the_official_format(tmp_path: Path, llama_tokenizers) -> None:
    """ScienceQA problems as problems.json holds them: the target keeps "BECAUSE:" when lecture and
    solution are empty, and prompt and answer are joined with no space ("Response:The answer")."""
    import json

    tok, sp = llama_tokenizers
    root = tmp_path / "ScienceQA"
    root.mkdir()
    base = {"hint": "", "image": None, "subject": "natural science", "grade": "grade3", "split": "train"}
    problems = {
        "1": {**base, "question": "Which is a mammal?", "choices": ["cat", "fish"], "answer": 0,
              "lecture": "Mammals have fur.\nThey feed milk.", "solution": "A cat has fur."},
        "2": {**base, "question": "Which is bigger?", "choices": ["sun", "moon"], "answer": 0,
              "lecture": "", "solution": ""},
    }
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps({"train": ["1", "2"]}))
    one, two = load_spec(f"scienceqa:{root}", "train")
    assert one.answer == "The answer is A. BECAUSE: Mammals have fur.\\nThey feed milk. A cat has fur."
    assert two.answer == "The answer is A. BECAUSE:"
    collator = MMACollator(tok, N_VISUAL)
    for s in (one, two):
        ids, labels = collator.encode(False, s.prompt, s.answer)
        assert (ids, labels) == official(sp, False, s.prompt, s.answer)
        answer_ids = [i for i in labels if i != IGNORE][:-1]
        assert sp.decode(answer_ids) == s.answer
        # the first answer piece is "T" of "Response:The", not the word-initial "▁The" a space would give
        assert not tok.convert_ids_to_tokens(answer_ids[0]).startswith("▁")
