"""Readers for the real formats, on small hand-made files in those formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.data_files import scienceqa_dir, vqa_files, write

from vltool.data import specs
from vltool.data.specs import load_spec, register_kind
from vltool.errors import UserError


def test_scienceqa_prompt_target_meta_and_images(tmp_path: Path) -> None:
    root = scienceqa_dir(tmp_path / "ScienceQA")
    samples = load_spec(f"scienceqa:{root}", "test")
    assert [s.id for s in samples] == ["1", "2", "3", "4", "5", "6"]
    q3 = samples[2]
    # LaVIN's QCM-ALE: question, context (the hint), options (A) (B) (C), "Response:"
    assert q3.prompt == "Question: Which is a state?\nContext: Look at the map.\nOptions: (A) Paris (B) Rome (C) Texas\nResponse:"
    # newlines inside the lecture become a literal backslash-n, as LaVIN trains
    assert q3.answer == "The answer is C. BECAUSE: States are regions.\\nThey have capitals. Texas is a state."
    assert q3.image == str(root / "images" / "test" / "3" / "image.png")
    assert q3.meta["choices"] == ["Paris", "Rome", "Texas"] and q3.meta["answer_index"] == 2
    assert q3.meta["has_hint"] and q3.meta["has_image"] and q3.meta["grade"] == "grade3"
    q2 = samples[1]
    assert "Context: N/A\n" in q2.prompt and not q2.meta["has_hint"]
    # no lecture/solution: LaVIN's target keeps "BECAUSE:" (util/base_prompt.py), and so does vltool's
    assert q2.answer == "The answer is B. BECAUSE:"
    assert samples[0].image is None and samples[0].references == [samples[0].answer]
    assert [s.id for s in load_spec(f"scienceqa:{root}", "train")] == ["7"]
    with pytest.raises(UserError, match=r"pid_splits.json has no split 'minival'; it has test, train"):
        load_spec(f"scienceqa:{root}", "minival")


def test_scienceqa_bad_problem_names_qid_and_key(tmp_path: Path) -> None:
    root = scienceqa_dir(tmp_path / "sqa")
    problems = json.loads((root / "problems.json").read_text())
    del problems["4"]["choices"]
    write(root / "problems.json", problems)
    with pytest.raises(UserError, match=r"problems.json problem '4': missing key 'choices'"):
        load_spec(f"scienceqa:{root}", "test")
    problems["4"]["choices"], problems["4"]["answer"] = ["yes", "no"], 5
    write(root / "problems.json", problems)
    with pytest.raises(UserError, match=r"problem '4': 'answer' must be an index into its 2 choices"):
        load_spec(f"scienceqa:{root}", "test")


def test_coco_karpathy_train_and_test_files(tmp_path: Path) -> None:
    train = write(tmp_path / "coco_karpathy_train.json", [
        {"image": "val2014/COCO_val2014_000000522418.jpg", "caption": "A woman cutting a cake.", "image_id": "coco_522418"},
        {"image": "val2014/COCO_val2014_000000522418.jpg", "caption": "Someone with a knife.", "image_id": "coco_522418"},
    ])
    test = write(tmp_path / "coco_karpathy_test.json", [
        {"image": "val2014/COCO_val2014_000000391895.jpg", "caption": ["A man on a bike.", "A biker rides."]},
    ])
    rows = load_spec(f"coco:{train}", "train", images="/data/coco")
    assert [(s.id, s.answer, s.references) for s in rows] == [
        ("522418", "A woman cutting a cake.", ["A woman cutting a cake."]),
        ("522418", "Someone with a knife.", ["Someone with a knife."])]
    assert rows[0].image == "/data/coco/val2014/COCO_val2014_000000522418.jpg" and rows[0].prompt == ""
    (sample,) = load_spec(f"coco:{test}", "test")  # no --images: paths are beside the JSON file
    assert sample.id == "391895" and sample.references == ["A man on a bike.", "A biker rides."]
    assert sample.image == str(tmp_path / "val2014" / "COCO_val2014_000000391895.jpg")


def test_coco_wrong_format_is_named(tmp_path: Path) -> None:
    bad = write(tmp_path / "c.json", {"images": []})
    with pytest.raises(UserError, match=r"c.json: expected a LAVIS Karpathy caption file, a JSON list of objects"):
        load_spec(f"coco:{bad}")
    bad = write(tmp_path / "c.json", [{"image": "a.jpg", "caption": ["ok"]}, {"image": "b.jpg", "caption": 3}])
    with pytest.raises(UserError, match=r"c.json item 1: 'caption' must be a string"):
        load_spec(f"coco:{bad}")
    (tmp_path / "broken.json").write_text('[{"image": "a.jpg",\n "caption": }]')
    with pytest.raises(UserError, match=r"broken.json is not valid JSON \(line 2"):
        load_spec(f"coco:{tmp_path / 'broken.json'}")
    with pytest.raises(UserError, match=r"coco data .*nope.json does not exist"):
        load_spec(f"coco:{tmp_path / 'nope.json'}")

def test_vqav2_questions_and_annotations(tmp_path: Path) -> None:
    q, a = vqa_files(tmp_path)
    (tmp_path / "imgs" / "val2014").mkdir(parents=True)
    first, second = load_spec(f"vqav2:{q},{a}", "test", images=str(tmp_path / "imgs"))
    assert first.id == "420" and first.prompt == "Question: What is on the table? Answer:"
    assert first.answer == "cup" and len(first.references) == 10 and first.references.count("mug") == 2
    assert first.image == str(tmp_path / "imgs" / "val2014" / "COCO_val2014_000000000042.jpg")
    assert second.meta["answer_type"] == "number" and second.answer == "3"
    (only,) = load_spec(f"vqav2:{q}", "test")[:1]  # no annotations: answerable, not scorable
    assert only.references == [] and only.answer == ""
    orphan = write(tmp_path / "a2.json", {"annotations": []})
    with pytest.raises(UserError, match=r"2 of 2 questions in .*q.json have no annotation \(e.g. question_id 420, 70\)"):
        load_spec(f"vqav2:{q},{orphan}")
    with pytest.raises(UserError, match=r"not an official VQAv2 questions file"):
        load_spec(f"vqav2:{a},{a}")


def test_alpaca_llava_and_jsonl(tmp_path: Path) -> None:
    alpaca = write(tmp_path / "alpaca.json", [
        {"instruction": "Give a synonym.", "input": "happy", "output": "glad"},
        {"instruction": "Say hi.", "input": "", "output": "hi"}])
    first, second = load_spec(f"alpaca:{alpaca}")
    assert first.prompt == "Instruction: Give a synonym. happy\nResponse:" and first.answer == "glad"
    assert second.prompt == "Instruction: Say hi.\nResponse:" and second.image is None and second.id == "1"

    llava = write(tmp_path / "llava.json", [
        {"id": "000000033471", "image": "000000033471.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the bus?"}, {"from": "gpt", "value": "White."},
            {"from": "human", "value": "Is it moving?"}, {"from": "gpt", "value": "No."}]},
        {"id": "text-only", "conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi!"}]}])
    a, b, c = load_spec(f"llava:{llava}", images="/coco/train2017")
    assert (a.id, b.id, c.id) == ("000000033471", "000000033471#2", "text-only")
    assert a.prompt == "Instruction: What colour is the bus?\nResponse:" and a.answer == "White."
    assert b.prompt == ("Instruction: What colour is the bus?\nResponse: White.\n"
                        "Instruction: Is it moving?\nResponse:") and b.answer == "No."
    assert a.image == b.image == "/coco/train2017/000000033471.jpg" and c.image is None
    bad = write(tmp_path / "bad.json", [{"id": "x", "conversations": [{"from": "gpt", "value": "?"}]}])
    with pytest.raises(UserError, match=r"bad.json item 0 turn 0: a 'gpt' reply with no human turn before it"):
        load_spec(f"llava:{bad}")

    rows = tmp_path / "d.jsonl"
    rows.write_text('{"image": "x.png", "prompt": "Q?", "answer": "A"}\n\n{"prompt": "P", "answer": "B", "id": 9}\n'
                    '{"prompt": "P"}\n')
    with pytest.raises(UserError, match=r"d.jsonl line 4: expected an object with 'prompt', 'answer'"):
        load_spec(f"jsonl:{rows}")
    rows.write_text('{"image": "x.png", "prompt": "Q?", "answer": "A"}\n\n{"prompt": "P", "answer": "B", "id": 9}\n')
    one, two = load_spec(f"jsonl:{rows}")
    assert (one.id, one.image, two.id, two.image) == ("1", str(tmp_path / "x.png"), "9", None)


def test_spec_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match=r"unknown kind 'cocoa'; expected one of alpaca, cc_sbu_align, coco, demo, "
                                        r"gqa, jsonl, llava, sbu, scienceqa, vg, vqav2, wds"):
        load_spec("cocoa:x.json")
    with pytest.raises(UserError, match=r"must look like KIND:ARG"):
        load_spec("train.json")
    with pytest.raises(UserError, match=r"'coco:' names no path"):
        load_spec("coco:")
    monkeypatch.setattr(specs, "READERS", dict(specs.READERS))
    monkeypatch.setattr(specs, "KIND_FAMILY", dict(specs.KIND_FAMILY))
    from vltool.data.sample import Sample

    register_kind("toy", lambda arg, split, images: [Sample(f"{arg}-{split}", None, "p", "a")], "text")
    assert [s.id for s in load_spec("toy:x", "val")] == ["x-val"]
    register_kind("empty", lambda arg, split, images: [], "text")
    with pytest.raises(UserError, match=r"'empty:x' \(train split\) has no samples"):
        load_spec("empty:x")


def test_gqa_official_and_lavis_shapes(tmp_path: Path) -> None:
    official = write(tmp_path / "testdev_balanced_questions.json", {
        "201307251": {"imageId": "n161313", "question": "Is it overcast?", "answer": "no", "fullAnswer": "No."}})
    (sample,) = load_spec(f"gqa:{official}", "test", images=str(tmp_path / "images"))
    assert (sample.id, sample.prompt, sample.answer, sample.references) == \
        ("201307251", "Question: Is it overcast? Answer:", "no", ["no"])
    assert sample.image == str(tmp_path / "images" / "n161313.jpg") and sample.meta["question"] == "Is it overcast?"
    lavis = write(tmp_path / "lavis.json", [{"image": "n1.jpg", "question": "What color?", "answer": "red",
                                             "question_id": 7}])
    assert load_spec(f"gqa:{lavis}", "test")[0].id == "7"
    with pytest.raises(UserError, match=r"question 201307251: missing key 'answer'"):
        load_spec(f"gqa:{write(tmp_path / 'bad.json', {'201307251': {'imageId': 'n1', 'question': 'q'}})}")
