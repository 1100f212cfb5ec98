"""Metrics on hand-made cases whose right values are worked out in the comments."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support.data_files import scienceqa_dir, vqa_files

from vltool.data.specs import load_spec
from vltool.eval.caption_metric import caption_metrics, java_available, ptb_tokenize
from vltool.eval.scienceqa_metric import parse_choice
from vltool.eval.scoring import score
from vltool.eval.text_metric import exact_match, perplexity
from vltool.eval.vqa_metric import normalize_vqa_answer, vqa_accuracy_one


def test_vqa_leave_one_out_accuracy() -> None:
    humans = ["cup"] * 2 + ["mug"] * 8
    # 2 of 10 humans said "cup". Leaving out one of those 2 leaves 1 match: min(1/3, 1) = 1/3;
    # leaving out one of the other 8 leaves 2 matches: 2/3. Mean: (2 * 1/3 + 8 * 2/3) / 10 = 0.6
    assert vqa_accuracy_one("cup", humans) == pytest.approx(0.6, abs=1e-12)
    # 3 matches: (3 * 2/3 + 7 * 1) / 10 = 0.9;  1 match: (1 * 0 + 9 * 1/3) / 10 = 0.3;  4+: always >= 3 -> 1
    assert vqa_accuracy_one("cup", ["cup"] * 3 + ["mug"] * 7) == pytest.approx(0.9, abs=1e-12)
    assert vqa_accuracy_one("cup", ["cup"] + ["mug"] * 9) == pytest.approx(0.3, abs=1e-12)
    assert vqa_accuracy_one("mug", humans) == 1.0 and vqa_accuracy_one("plate", humans) == 0.0


@pytest.mark.parametrize("raw, normal", [
    ("Yes.", "yes"), ("The two dogs!", "2 dogs"), ("dont know", "don't know"), ("3.5", "3.5"),
    ("1,000", "1000"), ("black-and-white", "black and white"), ("an apple", "apple"), ("None", "0"),
    ("Its red", "its red"), ("  Ten\n", "10")])
def test_vqa_normalisation(raw: str, normal: str) -> None:
    assert normalize_vqa_answer(raw) == normal


def test_vqav2_end_to_end_scores(tmp_path: Path) -> None:
    q, a = vqa_files(tmp_path)
    samples = load_spec(f"vqav2:{q},{a}", "test")
    # q420: "Mug." -> "mug", said by 2 of 10 -> 0.6 (see above);
    # q70: "Two" -> "2", said by 3 of 10 -> 0.9. Mean 75; both match some human -> exact match 100
    scores = score(f"vqav2:{q},{a}", samples, {"420": "Mug.", "70": "Two"})
    assert scores["vqa_accuracy"] == pytest.approx(75.0)
    assert scores["other"] == pytest.approx(60.0) and scores["number"] == pytest.approx(90.0)
    assert scores["exact_match"] == 100.0


def test_scienceqa_categories(tmp_path: Path) -> None:
    samples = load_spec(f"scienceqa:{scienceqa_dir(tmp_path / 'sqa')}", "test")
    preds = {
        "1": "The answer is A. BECAUSE: fur",  # right     NAT TXT     G1-6
        "2": "The answer is B.",               # right     NAT IMG     G7-12
        "3": "The answer is C.",               # right     SOC TXT IMG G1-6
        "4": "The answer is C.",               # 2 choices: out of range -> wrong, unparsed; SOC NO G7-12
        "5": "I think it is hat",              # unparsable -> wrong, unparsed;                 LAN NO G1-6
        "6": "The answer is A.",               # wrong     LAN TXT     G7-12
    }
    scores = score("scienceqa", samples, preds)
    assert scores["accuracy"] == pytest.approx(50.0)  # 3 of 6
    assert scores["NAT"] == 100.0 and scores["SOC"] == 50.0 and scores["LAN"] == 0.0
    assert scores["TXT"] == pytest.approx(200 / 3)  # q1 q3 right, q6 wrong
    assert scores["IMG"] == 100.0 and scores["NO"] == 0.0  # IMG: q2 q3; NO: q4 q5
    assert scores["G1-6"] == pytest.approx(200 / 3) and scores["G7-12"] == pytest.approx(100 / 3)
    assert scores["unparsed"] == 2.0


def test_scienceqa_answer_parsing() -> None:
    """LaVIN eval.py's reading: 'The answer is ([A-Z]).' where '.' is any character but a newline."""
    assert parse_choice("The answer is B. BECAUSE: ...", 3) == 1
    assert parse_choice("The answer is C, because the map shows it.", 3) == 2
    assert parse_choice("The answer is Copepod.", 3) == 2  # a word's capital, followed by any character
    assert parse_choice("The answer is Apple.", 3) == 0
    assert parse_choice("The answer is (A).", 3) is None  # "(" is not a capital letter
    assert parse_choice("The answer is C", 3) is None  # nothing after the letter: the "." has nothing to match
    assert parse_choice("The answer is B\nBECAUSE: ...", 3) is None  # "." does not match a newline
    assert parse_choice("the answer is B. The answer is A.", 3) == 0  # case-sensitive; the first match counts
    assert parse_choice("The answer is E.", 3) is None  # beyond the options: wrong (LaVIN: a random option)


def test_caption_metrics_by_hand() -> None:
    # image 0: a perfect caption; image 1: five tokens, none in any reference (and same length).
    preds = ["A man riding a horse.", "purple elephants fly over mountains"]
    refs = [["a man riding a horse"], ["two dogs playing in snow"]]
    for tokenizer in ("simple", "ptb") if java_available() else ("simple",):
        scores = caption_metrics(preds, refs, tokenizer=tokenizer)
        # BLEU-4 (corpus): n-gram precisions 5/10, 4/8, 3/6, 2/4 = 1/2 each, lengths equal -> 0.5
        assert scores["BLEU-4"] == pytest.approx(50.0, abs=1e-6)
        # CIDEr-D: image 0 scores 10 (cosine 1 for every n, no length penalty), image 1 scores 0
        assert scores["CIDEr"] == pytest.approx(500.0, abs=1e-6)
        # ROUGE-L: F = 1 for image 0, 0 for image 1
        assert scores["ROUGE_L"] == pytest.approx(50.0, abs=1e-6)
        assert scores["ptb_tokenizer"] == (1.0 if tokenizer == "ptb" else 0.0)


@pytest.mark.skipif(not java_available(), reason="needs java")
def test_ptb_tokenizer_matches_coco_toolkit() -> None:
    assert ptb_tokenize(["Two dogs' toys aren't red.", "", "A  cat\non a mat!"]) == \
        ["two dogs toys are n't red", "", "a cat on a mat"]


def test_meteor_is_added_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import vltool.eval.caption_metric as cm

    seen = {}
    monkeypatch.setattr(cm, "java_available", lambda: True)
    monkeypatch.setattr(cm, "_meteor", lambda gts, res: seen.setdefault("res", res) and 0.25)
    scores = caption_metrics(["a cat"], [["a cat"]], meteor=True, tokenizer="simple")
    assert scores["METEOR"] == 25.0 and seen["res"] == {0: ["a cat"]}
    assert "METEOR" not in caption_metrics(["a cat"], [["a cat"]], tokenizer="simple")


def test_text_exact_match_and_token_weighted_perplexity(tmp_path: Path) -> None:
    assert exact_match(["The Red circle.", "red", "blue"], [["red circle"], ["red circle"], ["green", "Blue!"]]) == \
        pytest.approx(200 / 3)
    # sample 1: NLL 4 ln 2 over 2 tokens (its own perplexity 4); sample 2: NLL 0 over 6 tokens (perplexity 1).
    # Token-weighted: exp(4 ln 2 / 8) = sqrt(2), not the per-sample mean 2.5
    assert perplexity([4 * math.log(2), 0.0], [2, 6]) == pytest.approx(math.sqrt(2))
    data = tmp_path / "a.json"
    data.write_text('[{"instruction": "Say hi.", "input": "", "output": "Hi!"}, '
                    '{"instruction": "Say no.", "input": "", "output": "No."}]')
    samples = load_spec(f"alpaca:{data}")
    scores = score(f"alpaca:{data}", samples, {"0": "hi", "1": "yes"},
                   nll={"0": (4 * math.log(2), 2), "1": (0.0, 6)})
    assert scores == pytest.approx({"exact_match": 50.0, "perplexity": math.sqrt(2)})
