"""Each shipped eval recipe's decoding is the benchmark's official one, and it reaches ``generate``.

A tiny BLIP-2 (and a tiny LaVIN-shaped MMA model) run the recipes' settings through ``vltool eval``'s
own code; ``generate`` is wrapped to record what it received and what it produced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.data_files import vqa_files, write
from support.tiny_models import IMAGE, tiny_model, word_tokenizer
from transformers import BlipImageProcessor, CLIPImageProcessor

from vltool.config.shipped import load_named_recipe
from vltool.data.sample import Sample
from vltool.eval import predictors
from vltool.stages import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

VQA = {"num_beams": 5, "max_new_tokens": 10, "min_new_tokens": 0, "length_penalty": -1.0,
       "question_text": "blip_question", "temperature": 0.0}


@pytest.mark.parametrize("name", ["eval/vqav2", "eval/okvqa", "eval/gqa"])
def test_vqa_recipes_use_vpgtrans_vqa_decoding(name: str) -> None:
    cfg = load_named_recipe(name, "eval", [], {})
    assert {k: getattr(cfg.eval, k) for k in VQA} == VQA


def test_caption_and_scienceqa_recipes() -> None:
    caption = load_named_recipe("eval/coco-caption", "eval", [], {}).eval
    # official min_length 8 counts the BOS of the empty prompt: 7 new tokens
    assert (caption.num_beams, caption.max_new_tokens, caption.min_new_tokens) == (5, 30, 7)
    sqa = load_named_recipe("eval/scienceqa", "eval", [], {}).eval
    assert (sqa.temperature, sqa.top_p, sqa.max_new_tokens, sqa.num_beams) == (0.1, 0.75, 64, 1)


def recording(monkeypatch: pytest.MonkeyPatch, model) -> list[dict]:
    """Wrap ``model.generate``: each call's keyword arguments and its new-token counts are recorded."""
    calls: list[dict] = []
    original = model.generate

    def generate(*args, **kwargs):
        out = original(*args, **kwargs)
        prompt = kwargs["input_ids"].shape[1] if "input_ids" in kwargs and out.shape[1] > kwargs["input_ids"].shape[1] else 0
        calls.append({**kwargs, "new_tokens": [int((row[prompt:] != kwargs.get("pad_token_id", -1)).sum()) for row in out]})
        return out

    monkeypatch.setattr(model, "generate", generate)
    return calls


def blip2_predictor(monkeypatch: pytest.MonkeyPatch):
    model, tokenizer = tiny_model("opt")
    processor = BlipImageProcessor(size={"height": IMAGE, "width": IMAGE})
    predictor = predictors._blip2_predictor("tiny", model, tokenizer, processor)
    monkeypatch.setattr(evaluate, "load_predictor", lambda spec: predictor)  # where eval looks it up
    return model


def test_vqav2_recipe_decoding_reaches_generate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q, a = vqa_files(tmp_path)
    (tmp_path / "val2014").mkdir()
    for image_id in (42, 7):
        Image.new("RGB", (40, 30), (image_id * 5, 0, 0)).save(tmp_path / "val2014" / f"COCO_val2014_{image_id:012d}.jpg")
    calls = recording(monkeypatch, blip2_predictor(monkeypatch))
    prompts: list[list[str]] = []
    original = predictors.Predictor._generate_images
    monkeypatch.setattr(predictors.Predictor, "_generate_images",
                        lambda self, samples, images, cfg: prompts.append([s.prompt for s in samples])
                        or original(self, samples, images, cfg))
    cfg = load_named_recipe("eval/vqav2", "eval", [], {"data.eval": [f"vqav2:{q},{a}"], "data.images": str(tmp_path)})
    evaluate.run(cfg, ["tiny"], out=tmp_path / "eval.json")
    (call,) = calls
    assert (call["num_beams"], call["max_new_tokens"], call["min_new_tokens"], call["length_penalty"],
            call["do_sample"]) == (5, 10, 0, -1.0, False)
    assert max(call["new_tokens"]) <= 10
    # blip_question: lower-case, '.!"()*#:;~' removed ('?' is kept), inside VPGTrans's prompt
    assert prompts == [["Question: what is on the table? Answer:", "Question: how many dogs? Answer:"]]
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["generation"]["length_penalty"] == -1.0 and report["generation"]["num_beams"] == 5


def test_caption_recipe_min_and_max_new_tokens_bind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        Image.new("RGB", (32, 32), (0, 80 * n, 0)).save(tmp_path / f"COCO_val2014_{n:012d}.jpg")
    test = write(tmp_path / "test.json", [{"image": f"COCO_val2014_{n:012d}.jpg", "caption": ["a red square"]}
                                          for n in range(3)])
    model = blip2_predictor(monkeypatch)
    calls = recording(monkeypatch, model)
    cfg = load_named_recipe("eval/coco-caption", "eval", [], {"data.eval": [f"coco:{test}"]})
    evaluate.run(cfg, ["tiny"])
    (call,) = calls
    assert (call["num_beams"], call["max_new_tokens"], call["min_new_tokens"]) == (5, 30, 7)
    assert call["length_penalty"] == 1.0
    assert all(7 <= n <= 30 for n in call["new_tokens"]), call["new_tokens"]


def test_scienceqa_recipe_samples_as_lavin_and_is_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    from support.tiny_models import tiny_clip_mma

    model = tiny_clip_mma(dropout=0.0).eval()
    tokenizer = word_tokenizer()
    processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    predictor = predictors.MMAPredictor("tiny-mma", model, tokenizer, processor)
    calls = recording(monkeypatch, model.lm)
    section = load_named_recipe("eval/scienceqa", "eval", [], {}).eval
    settings = predictors.GenerationSettings(batch_size=2, max_new_tokens=section.max_new_tokens,
                                             temperature=section.temperature, top_p=section.top_p, seed=section.seed)
    samples = [Sample(str(i), Image.new("RGB", (28, 28), (40 * i, 0, 0)) if i % 2 else None,
                      "question : a red circle ? answer :", "", ["a"], {}) for i in range(4)]
    before = torch.random.get_rng_state()
    first = predictor.generate(samples, settings)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left as it was
    assert predictor.generate(samples, settings) == first  # seeded: a rerun gives the same answers
    assert all((c["do_sample"], c["temperature"], c["top_p"], c["max_new_tokens"]) == (True, 0.1, 0.75, 64)
               for c in calls)


def test_mma_models_decode_with_one_beam(monkeypatch: pytest.MonkeyPatch) -> None:
    """LaVIN-layout routing is set per batch row, so an MMA model ignores eval.num_beams (eval logs it)."""
    from support.tiny_models import tiny_clip_mma

    model = tiny_clip_mma(dropout=0.0).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    predictor = predictors.MMAPredictor("tiny-mma", model, word_tokenizer(), processor)
    calls = recording(monkeypatch, model.lm)
    vqa = load_named_recipe("eval/vqav2", "eval", [], {}).eval
    settings = predictors.GenerationSettings(max_new_tokens=3, num_beams=vqa.num_beams,
                                             length_penalty=vqa.length_penalty)
    predictor.generate([Sample("0", None, "question : a ? answer :", "", ["a"], {})], settings)
    assert calls[0]["num_beams"] == 1 and "length_penalty" not in calls[0] and calls[0]["do_sample"] is False
