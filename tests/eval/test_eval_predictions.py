"""Saved predictions files and the scoring entry point's checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vltool.data.sample import Sample
from vltool.errors import UserError
from vltool.eval.predictions import align, read_predictions, write_predictions
from vltool.eval.scoring import metric_family, score

SAMPLES = [Sample(str(i), None, "p", a, [a]) for i, a in enumerate(["red", "blue", "green"], start=1)]


@pytest.mark.parametrize(("text", "message"), [
    ('{"id": 1, "prediction": "red"}\n\n{oops\n', r"p.jsonl line 3 is not valid JSON"),
    ('{"id": 1, "prediction": "red"}\n{"id": 2}\n',
     r"p.jsonl line 2: expected an object with an 'id' and a 'prediction'"),
    ('{"id": 1, "prediction": "red"}\n{"id": "1", "prediction": "blue"}\n',
     r"p.jsonl line 2: id '1' was already given at line 1"),
    ('{"id": 1, "prediction": ["red"]}\n', r"line 1: 'prediction' must be a string"),
])
def test_bad_json_line_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_predictions(path)


def test_a_missing_predictions_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"predictions file .*none.jsonl does not exist"):
        read_predictions(tmp_path / "none.jsonl")


def test_missing_and_unknown_ids_are_counted_with_examples(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prediction": "x"}) + "\n" for i in [1, "nope", "zzz"]))
    found = read_predictions(path).texts
    with pytest.raises(UserError, match=r"p.jsonl: 2 dataset ids have no prediction \(e.g. 2, 3\); "
                                        r"2 predictions have ids not in demo:text \(e.g. nope, zzz\)$"):
        align(SAMPLES, found, str(path), "demo:text")
    with pytest.raises(UserError, match=r"no id matches at all: is this the right --data SPEC and --split\?"):
        score("jsonl:x", SAMPLES, {"a": "red", "b": "blue", "c": "green"})


def test_official_result_files_and_round_trip(tmp_path: Path) -> None:
    vqa = tmp_path / "vqa_result.json"
    vqa.write_text(json.dumps([{"question_id": 1, "answer": "red"}, {"question_id": 2, "answer": "Blue."}]))
    assert read_predictions(vqa).texts == {"1": "red", "2": "Blue."}
    coco = tmp_path / "captions.jsonl"
    coco.write_text('{"image_id": 391895, "caption": "a man on a bike"}\n')
    assert read_predictions(coco).texts == {"391895": "a man on a bike"}
    out = write_predictions(tmp_path / "o.jsonl", SAMPLES, ["red", "x", "Green!"], nll=[(1.5, 3), (2.0, 1), (2.5, 2)])
    back = read_predictions(out)
    assert back.texts == {"1": "red", "2": "x", "3": "Green!"} and back.nll["2"] == (2.0, 1)
    # exact match: "red" and "Green!" (normalised "green") -> 2 of 3; perplexity exp((1.5+2+2.5)/(3+1+2)) = e
    assert score("jsonl:o.jsonl", SAMPLES, back.texts, back.nll) == pytest.approx(
        {"exact_match": 200 / 3, "perplexity": math.e})


def test_metric_families_and_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [metric_family(d) for d in ("coco:k.json", "vqav2:q.json,a.json", "scienceqa:SQA", "alpaca:a.json",
                                       "llava:l.json", "demo:caption", "demo:vqa", "demo:sqa", "demo:text", "vqa",
                                       "coco")] == \
        ["caption", "vqa", "sqa", "text", "text", "caption", "vqa", "sqa", "text", "vqa", "caption"]
    with pytest.raises(UserError, match=r"no metric for data kind 'toy'"):
        metric_family("toy:x")
    from vltool.data import specs

    monkeypatch.setattr(specs, "KIND_FAMILY", dict(specs.KIND_FAMILY))
    monkeypatch.setattr(specs, "READERS", dict(specs.READERS))
    specs.register_kind("toy", lambda arg, split, images: [], "vqa")
    # single-reference VQA (like the demo world's): exact match only, no leave-one-out accuracy
    assert score("toy:x", SAMPLES, ["Red.", "the blue", "red"]) == pytest.approx({"exact_match": 200 / 3})
    unanswered = [Sample("1", None, "Question: ? Answer:", "", [])]
    with pytest.raises(UserError, match=r"1 samples have no reference answer .*pass the annotations file too"):
        score("vqav2:q.json", unanswered, ["x"])
    with pytest.raises(UserError, match=r"ScienceQA scoring needs each sample's choices"):
        score("scienceqa:SQA", SAMPLES, ["a", "b", "c"])
