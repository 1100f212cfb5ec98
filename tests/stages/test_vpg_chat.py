"""VL-Vicuna's chat stage (VPGTrans stage 3): the cc_sbu_align reader, the chat turn's token ids
against the official construction, and transfer -> transfer --from-vpg (chat) -> merge -> plain
transformers on tiny replicas of the real hub repositories.

The official ids (github.com/VPGTrans/VPGTrans@32e885c ``lavis/models/blip2_models/blip2_vicuna.py``):
``[BOS] + tok("###Human: <Img>") + 32 visual tokens + tok("</Img> {instruction} ###Assistant: ")``,
each segment tokenised alone without special tokens (``prompt_wrap``), then
``tok(caption + "###")[:160]`` as the only labelled tokens. The expected values below are built
that way; vltool's come from its chat template (``vltool.models.chat_layout``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.run import invoke
from support.tiny_models import llama_tokenizer_folder

from vltool.data.specs import load_spec
from vltool.data.text_batches import IGNORE
from vltool.errors import UserError
from vltool.models.chat_layout import INSTRUCTIONS, ChatLayout, chat_template, user_turn

CHAT = {"template": "###Human: {} ###Assistant: ", "image": "<Img><ImageHere></Img>",
        "instructions": list(INSTRUCTIONS), "end": "###"}
Q = 4  # query tokens of the test layouts
CAPTIONS = ["The image shows a red circle on the left of a white background.",
            "A big blue square sits on the right. It is the only shape in the picture."]


def cc_sbu_align(root: Path) -> Path:
    """MiniGPT-4's layout: filter_cap.json + image/{image_id}.jpg."""
    (root / "image").mkdir(parents=True)
    for image_id, colour in ((2, (250, 0, 0)), (3, (0, 0, 250))):
        Image.new("RGB", (24, 20), colour).save(root / "image" / f"{image_id}.jpg")
    rows = [{"image_id": "2", "caption": CAPTIONS[0]}, {"image_id": "3", "caption": CAPTIONS[1]}]
    (root / "filter_cap.json").write_text(json.dumps({"annotations": rows}))
    return root


def test_cc_sbu_align_reader(tmp_path: Path) -> None:
    root = cc_sbu_align(tmp_path / "cc_sbu_align")
    samples = load_spec(f"cc_sbu_align:{root}", "train")
    assert [(s.id, s.image, s.prompt, s.answer) for s in samples] == [
        ("2", str(root / "image" / "2.jpg"), "", CAPTIONS[0]), ("3", str(root / "image" / "3.jpg"), "", CAPTIONS[1])]
    (root / "filter_cap.json").write_text(json.dumps([{"image_id": "2", "caption": "x"}]))
    with pytest.raises(UserError, match=r'filter_cap.json: expected \{"annotations"'):
        load_spec(f"cc_sbu_align:{root}")
    (root / "filter_cap.json").write_text(json.dumps({"annotations": [{"image_id": "2"}]}))
    with pytest.raises(UserError, match=r"annotation 0: missing key 'caption'"):
        load_spec(f"cc_sbu_align:{root}")
    with pytest.raises(UserError, match=r"cc_sbu_align data .*nowhere does not exist"):
        load_spec(f"cc_sbu_align:{tmp_path / 'nowhere'}")


@pytest.fixture(scope="module")
def vicuna_tokenizer(tmp_path_factory):
    """A tokenizer.model-only LLaMA / Vicuna folder's tokenizer, <image> added as vltool adds it."""
    from transformers import AutoTokenizer

    texts = [CHAT["template"].format(CHAT["image"] + " " + i) for i in INSTRUCTIONS] + CAPTIONS
    tok = AutoTokenizer.from_pretrained(llama_tokenizer_folder(tmp_path_factory.mktemp("vicuna-tok"), texts))
    tok.add_tokens(["<image>"], special_tokens=True)
    return tok


def official_prompt(tok, instruction: str, image_id: int) -> list[int]:
    before, after = CHAT["template"].format(CHAT["image"] + " " + instruction).split("<ImageHere>")
    return ([tok.bos_token_id] + tok(before, add_special_tokens=False)["input_ids"] + [image_id] * Q
            + tok(after, add_special_tokens=False)["input_ids"])


def test_chat_rows_equal_the_official_ids(vicuna_tokenizer) -> None:
    tok = vicuna_tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    layout = ChatLayout(tok, Q, image_id, 160, {**CHAT, "instructions": [INSTRUCTIONS[2]]})
    batch = layout.training(["", ""], CAPTIONS)
    for row, caption in enumerate(CAPTIONS):
        head = official_prompt(tok, INSTRUCTIONS[2], image_id)
        answer = tok(caption + "###", add_special_tokens=False)["input_ids"]
        n = len(head) + len(answer)
        assert batch["input_ids"][row, :n].tolist() == head + answer
        assert batch["labels"][row, :n].tolist() == [IGNORE] * len(head) + answer
        assert batch["attention_mask"][row].sum() == n
    # truncation as max_txt_len: the caption + "###" tokens are cut, the prompt never is
    short = ChatLayout(tok, Q, image_id, 5, CHAT).training(["Describe it."], [CAPTIONS[0]])
    assert (short["labels"] != IGNORE).sum() == 5
    # generation: the same prompt, left-padded; no prompt -> the first instruction of the recipe
    gen = ChatLayout(tok, Q, image_id, 160, CHAT).generation(["", "What is shown?"])
    for row, instruction in enumerate([INSTRUCTIONS[0], "What is shown?"]):
        assert gen["input_ids"][row][gen["attention_mask"][row] == 1].tolist() == official_prompt(tok, instruction,
                                                                                                  image_id)
    lengths = gen["attention_mask"].sum(1)
    assert lengths[0] != lengths[1] and gen["attention_mask"][int(lengths.argmin()), 0] == 0  # padded on the left


def test_one_official_instruction_drawn_per_micro_batch(vicuna_tokenizer) -> None:
    tok = vicuna_tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    layout = ChatLayout(tok, Q, image_id, 160, CHAT)
    heads = {tuple(official_prompt(tok, i, image_id)): i for i in INSTRUCTIONS}
    torch.manual_seed(0)
    drawn = []
    for _ in range(24):
        batch = layout.training(["", "", "Own question?"], ["a", "b", "c"])
        rows = [[t for t, lab in zip(ids.tolist(), labels.tolist()) if lab == IGNORE and t != layout.encoder.pad_id]
                for ids, labels in zip(batch["input_ids"], batch["labels"])]
        assert rows[0] == rows[1] and tuple(rows[0]) in heads  # one instruction for the whole micro-batch
        assert rows[2] == official_prompt(tok, "Own question?", image_id)  # a sample's own prompt is kept
        drawn.append(heads[tuple(rows[0])])
    assert set(drawn) == set(INSTRUCTIONS)


def test_chat_template_with_plain_transformers(vicuna_tokenizer) -> None:
    """``apply_chat_template`` of the template a merged folder carries gives the official ids."""
    tok = vicuna_tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    template = chat_template(CHAT, Q)
    for instruction in (INSTRUCTIONS[0], "What colour is the shape?"):
        ids = tok.apply_chat_template(user_turn(instruction), chat_template=template, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        assert list(ids) == official_prompt(tok, instruction, image_id)
    # a finished turn (the assistant's answer) ends with the end mark, as training appends it
    text = tok.apply_chat_template([*user_turn("Hi."), {"role": "assistant", "content": "A cat."}],
                                   chat_template=template, tokenize=False)
    assert text.endswith("###Assistant: A cat.###")


def test_generation_stops_at_the_end_mark(vicuna_tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    """vlm.generate hands the chat layout's stop string to transformers and keeps the text before it."""
    from vltool.models import vlm

    tok = vicuna_tokenizer
    layout = ChatLayout(tok, Q, tok.convert_tokens_to_ids("<image>"), 160, CHAT)
    seen = {}

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, **kwargs):
            seen.update(kwargs)
            answer = tok("A red circle.###Human: more", add_special_tokens=False, return_tensors="pt")["input_ids"]
            return torch.cat([input_ids, answer], 1)

    out = vlm.generate(Model(), layout, torch.zeros(1, 3, 4, 4), [""])
    assert seen["stop_strings"] == ["###"] and seen["tokenizer"] is tok
    assert out == ["A red circle."]




@pytest.mark.slow
def test_chat_stage_end_to_end_on_real_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """transfer -> transfer --from-vpg (the shipped chat recipe) -> merge; plain transformers then
    builds vltool's prompt from the folder's chat template and generates vltool's text."""
    from support.real_layouts import NUM_QUERY_TOKENS, build_hub_cache
    from transformers import AutoTokenizer, Blip2ForConditionalGeneration, Blip2Processor

    from vltool.artifacts import read_artifact
    from vltool.data.sample import Sample
    from vltool.eval.predictors import GenerationSettings, load_predictor

    hf_home = tmp_path / "hf"
    build_hub_cache(hf_home)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    root = cc_sbu_align(tmp_path / "cc_sbu_align")
    vpg, chat, merged = tmp_path / "vpg", tmp_path / "chat", tmp_path / "merged"
    invoke(["transfer", "--src", "opt6.7b", "--dst", "vicuna7b", "--data", f"cc_sbu_align:{root}", "--out", str(vpg),
            "warmup.max_steps=1", "train.max_steps=1", "train.batch_size=2", "train.precision=no"])
    small = ["train.max_steps=2", "train.batch_size=2", "train.micro_batch_size=1", "train.warmup_steps=1",
             "train.precision=no", "max_text_tokens=24", "train.save_every=0"]
    invoke(["transfer", "-r", "vpgtrans/vicuna7b-chat", "--from-vpg", str(vpg), "--data", f"cc_sbu_align:{root}",
            "--out", str(chat), *small])
    manifest = read_artifact(chat).manifest
    assert manifest["kind"] == "vpg" and manifest["recipe"]["chat"]["end"] == "###"
    assert (manifest["recipe"]["src"], manifest["recipe"]["dst"]) == ("opt6.7b", "vicuna7b")  # from the artifact
    assert manifest["metrics"]["chat_steps"] == 2 and manifest["metrics"]["steps_total"] == 2 + 2  # after 1 + 1
    rows = [json.loads(line) for line in (chat / "metrics.jsonl").read_text().splitlines()]
    assert {r.get("phase") for r in rows} == {"warmup", "finetune", "chat"}
    before = read_artifact(vpg).manifest
    from safetensors.torch import load_file

    trained, start = load_file(str(chat / "vpg.safetensors")), load_file(str(vpg / "vpg.safetensors"))
    for part in ("qformer.", "ln_vision.", "projector.", "query_tokens"):  # stage 3 trains all of stage 2's parts
        name = next(k for k in trained if k.startswith(part) and trained[k].dtype.is_floating_point)
        assert not torch.equal(trained[name], start[name]), part
    assert before["recipe"].get("chat") is None

    invoke(["merge", str(chat), "--out", str(merged)])
    folder = read_artifact(merged).manifest
    assert folder["layout"] == "vl-chat" and folder["stop_strings"] == ["###"]
    card = (merged / "README.md").read_text()  # the model card shows the plain-transformers call
    assert "apply_chat_template(messages, tokenize=False)" in card and 'stop_strings="###"' in card
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    processor = Blip2Processor.from_pretrained(str(merged))
    assert processor.num_query_tokens is None  # the template writes the image tokens itself
    config = json.loads((merged / "config.json").read_text())
    image_id = config["image_token_index"]

    predictor = load_predictor(str(chat))  # vltool's own model and layout, from the vpg artifact
    assert isinstance(predictor.layout, ChatLayout)
    instruction = INSTRUCTIONS[1]
    ours = predictor.layout.generation([instruction])["input_ids"][0].tolist()
    plain = tokenizer.apply_chat_template(user_turn(instruction), tokenize=True)
    plain = list(plain["input_ids"] if hasattr(plain, "keys") else plain)
    assert plain == ours
    before_img, after_img = CHAT["template"].format(CHAT["image"] + " " + instruction).split("<ImageHere>")
    assert plain == ([tokenizer.bos_token_id] + tokenizer(before_img, add_special_tokens=False)["input_ids"]
                     + [image_id] * NUM_QUERY_TOKENS + tokenizer(after_img, add_special_tokens=False)["input_ids"])

    model = Blip2ForConditionalGeneration.from_pretrained(str(merged)).eval()
    image = root / "image" / "2.jpg"
    text = tokenizer.apply_chat_template(user_turn(instruction), tokenize=False)
    with Image.open(image) as handle:
        inputs = processor(images=handle.convert("RGB"), text=text, add_special_tokens=False, return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == ours
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1, stop_strings="###",
                         tokenizer=tokenizer)
    new = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).split("###")[0].strip()
    settings = GenerationSettings(batch_size=1, max_new_tokens=6)
    sample = Sample("2", str(image), instruction, "")
    assert new == predictor.generate([sample], settings)[0]
    assert new == load_predictor(str(merged)).generate([sample], settings)[0]  # the merged folder, in vltool


def test_from_vpg_refusals(tmp_path: Path) -> None:
    """One clear line each: a chat recipe with a caption prompt, --from-vpg beside --from-warmup, no data."""
    from vltool.artifacts import ArtifactWriter
    from vltool.config.loader import load_recipe

    recipe = tmp_path / "chat.yaml"
    recipe.write_text("stage: transfer\nsrc: a\ndst: b\nprompt: 'a photo of'\nchat: {}\n")
    with pytest.raises(UserError, match=r"with chat set, the instruction is the prompt"):
        load_recipe(recipe, "transfer")
    recipe.write_text("stage: transfer\nsrc: a\ndst: b\nchat: {template: '###Human: ###Assistant: '}\n")
    with pytest.raises(UserError, match=r"chat.template .* must hold exactly one \{\}"):
        load_recipe(recipe, "transfer")
    art = tmp_path / "vpg"
    with ArtifactWriter(art, "vpg") as writer:
        writer.manifest["recipe"] = {"src": "opt6.7b", "dst": "vicuna7b"}
    with pytest.raises(UserError, match=r"--from-vpg continues a finished vpg artifact; drop --from-warmup"):
        invoke(["transfer", "-r", "vpgtrans/vicuna7b-chat", "--from-vpg", str(art), "--from-warmup", str(art),
                "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match=r"--from-vpg trains on the recipe's data.train or --data"):
        invoke(["transfer", "-r", "vpgtrans/vicuna7b-chat", "--from-vpg", str(art), "data.train=[]",
                "--out", str(tmp_path / "o")])
