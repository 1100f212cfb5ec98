"""The headline chain on tiny replicas of the real hub repositories (see real_layouts.py).

transfer (opt2.7b -> opt6.7b / llama7b / vicuna7b, as aliases resolved from an HF cache) ->
merge -> plain ``Blip2Processor`` + ``Blip2ForConditionalGeneration`` generate (same tokens as
vltool's own generation from the vpg artifact) -> eval -> tune-mma -> merge -> plain transformers
again with LaVIN's prompt (``layout.image_prompt``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.real_layouts import (
    NUM_QUERY_TOKENS,
    OLD_BLIP2_REVISION,
    VICUNA_CONFIG_IDS,
    build_hub_cache,
    offline_hub,
)
from support.run import invoke

from vltool.artifacts import read_artifact

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a photo of"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    build_hub_cache(home)
    return home


@pytest.fixture
def hub(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_hub(hf_home, monkeypatch)


@pytest.fixture(scope="module")
def caption_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    rows = []
    for i, (colour, caption) in enumerate([((250, 0, 0), "a red circle on the left"),
                                          ((0, 0, 250), "a big blue square on the right"),
                                          ((0, 250, 0), "a small green triangle"),
                                          ((250, 250, 0), "a photo of a cat on a mat")]):
        Image.new("RGB", (24, 20), colour).save(root / f"img{i}.png")
        rows.append({"image": f"img{i}.png", "prompt": "", "answer": caption})
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, root


def snapshot(hf_home: Path, hub_id: str) -> Path:
    repo = hf_home / "hub" / f"models--{hub_id.replace('/', '--')}"
    return repo / "snapshots" / (repo / "refs" / "main").read_text()


def test_replicas_are_laid_out_as_the_hub_repositories(hub: Path) -> None:
    """File names, key prefixes and stored dtypes of each replica, and the cache's own structure."""
    from safetensors import safe_open

    blip2 = snapshot(hub, "Salesforce/blip2-opt-2.7b")
    assert (blip2 / "config.json").is_symlink() and "blobs" in str((blip2 / "config.json").readlink())
    index = json.loads((blip2 / "model.safetensors.index.json").read_text())["weight_map"]
    assert set(index.values()) == {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    assert "language_model.model.decoder.embed_tokens.weight" in index and "query_tokens" in index
    config = json.loads((blip2 / "config.json").read_text())
    assert json.loads((blip2 / "added_tokens.json").read_text())["<image>"] == config["image_token_index"]
    assert {"vocab.json", "merges.txt", "preprocessor_config.json", "processor_config.json"} <= {
        p.name for p in blip2.iterdir()}

    opt = snapshot(hub, "facebook/opt-6.7b")
    names = {p.name for p in opt.iterdir()}
    assert {"pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json", "vocab.json", "merges.txt"} <= names
    assert "tokenizer.json" not in names
    state = torch.load(opt / "pytorch_model-00001-of-00002.bin", weights_only=True)
    assert all(k.startswith("decoder.") for k in state) and {t.dtype for t in state.values()} == {torch.float16}

    for hub_id, shard in (("lmsys/vicuna-7b-v1.1", "pytorch_model-00001-of-00002.bin"),
                          ("huggyllama/llama-7b", "model-00001-of-00002.safetensors")):
        folder = snapshot(hub, hub_id)
        names = {p.name for p in folder.iterdir()}
        assert "tokenizer.model" in names and "tokenizer.json" not in names and shard in names
        if shard.endswith(".bin"):
            dtypes = {t.dtype for t in torch.load(folder / shard, weights_only=True).values()}
        else:
            with safe_open(str(folder / shard), "pt") as handle:
                dtypes = {handle.get_tensor(k).dtype for k in handle.keys()}  # noqa: SIM118
        assert dtypes == {torch.float16}

    # the BLIP-2 config as the hub has it since its 2024 update; the old revision without what it added
    assert config["transformers_version"] == "4.47.0.dev0" and config["text_config"]["torch_dtype"] == "float16"
    newline = json.loads((blip2 / "tokenizer.json").read_text())["model"]["vocab"]["\u010a"]
    assert config["text_config"]["eos_token_id"] == newline  # 50118 = "\n"
    old = blip2.parents[1] / "snapshots" / OLD_BLIP2_REVISION
    old_config = json.loads((old / "config.json").read_text())
    assert "image_token_index" not in old_config and not (old / "processor_config.json").exists()
    assert not (old / "added_tokens.json").exists() and "<image>" not in (old / "tokenizer.json").read_text()
    assert old_config["text_config"]["vocab_size"] < config["text_config"]["vocab_size"]
    assert {p.name for p in old.iterdir() if "model" in p.name} == {
        "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json"}
    for hub_id in ("Salesforce/blip2-opt-6.7b", "facebook/opt-2.7b"):
        assert (snapshot(hub, hub_id) / "config.json").is_file()
    vicuna = snapshot(hub, "lmsys/vicuna-7b-v1.1")
    vicuna_config = json.loads((vicuna / "config.json").read_text())
    ids = tuple(vicuna_config[f"{k}_token_id"] for k in ("bos", "eos", "pad"))
    assert ids == VICUNA_CONFIG_IDS == (0, 1, -1)
    assert json.loads((vicuna / "generation_config.json").read_text())["eos_token_id"] == 2

    clip = json.loads((snapshot(hub, "openai/clip-vit-large-patch14") / "config.json").read_text())
    assert {"text_config_dict", "vision_config_dict"} <= clip.keys()


def plain_generate(folder: Path, image: Path, text: str, new_tokens: int) -> tuple[list[int], str]:
    """What a user of plain transformers gets from a merged folder: (prompt ids, generated text)."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    processor = Blip2Processor.from_pretrained(str(folder))
    model = Blip2ForConditionalGeneration.from_pretrained(str(folder)).eval()
    with Image.open(image) as handle:
        inputs = processor(images=handle.convert("RGB"), text=text, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         num_beams=1)
    length = inputs["input_ids"].shape[1]
    new = out[:, length:] if out.shape[1] > length else out
    assert (inputs["input_ids"] == model.config.image_token_index).sum() == NUM_QUERY_TOKENS  # the image is used
    return inputs["input_ids"][0].tolist(), processor.tokenizer.decode(new[0], skip_special_tokens=True).strip()


def vltool_generate(spec: Path, image: Path, prompt: str, new_tokens: int) -> str:
    from vltool.data.sample import Sample
    from vltool.eval.predictors import GenerationSettings, load_predictor

    predictor = load_predictor(str(spec))
    settings = GenerationSettings(batch_size=1, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return predictor.generate([Sample("0", str(image), prompt, "")], settings)[0]


def check_saved_tokenizer(folder: Path) -> None:
    """<image> at config.image_token_index; bos / eos / pad the tokenizer's, agreeing with both
    configs, none negative (lmsys/vicuna-7b-v1.1's config.json says pad -1)."""
    from transformers import AutoTokenizer

    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert "<image>" in tokenizer.get_vocab()
    assert tokenizer.convert_tokens_to_ids("<image>") == config["image_token_index"] != tokenizer.unk_token_id
    text = config["text_config"]
    assert config["image_token_index"] < text["vocab_size"]
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id == text["pad_token_id"] == generation["pad_token_id"]
    assert (text["bos_token_id"], text["eos_token_id"]) == (tokenizer.bos_token_id, tokenizer.eos_token_id)
    assert generation["bos_token_id"] == tokenizer.bos_token_id
    stops = generation["eos_token_id"] if isinstance(generation["eos_token_id"], list) else [generation["eos_token_id"]]
    assert tokenizer.eos_token_id in stops
    for value in [text["bos_token_id"], text["eos_token_id"], text["pad_token_id"], generation["pad_token_id"], *stops]:
        assert 0 <= value < text["vocab_size"]


def plain_batch(folder: Path, images: list[Path], texts: list[str], new_tokens: int) -> list[str]:
    """Plain transformers on a padded batch (two images, two prompts of different lengths): each
    row must be what that prompt alone gives, and every row must carry the image."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    processor = Blip2Processor.from_pretrained(str(folder))
    model = Blip2ForConditionalGeneration.from_pretrained(str(folder)).eval()
    opened = [Image.open(image).convert("RGB") for image in images]
    inputs = processor(images=opened, text=texts, padding=True, return_tensors="pt")
    assert len(texts) == 1 or inputs["attention_mask"].min() == 0  # prompts of different lengths: padded
    image_tokens = (inputs["input_ids"] == model.config.image_token_index).sum(1)
    assert image_tokens.tolist() == [NUM_QUERY_TOKENS] * len(texts)
    settings = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "num_beams": 1}
    out = model.generate(**inputs, **settings)
    batch = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    for row, (image, text) in enumerate(zip(opened, texts)):
        alone = processor(images=image, text=text, return_tensors="pt")
        single = model.generate(**alone, **settings)
        assert processor.decode(single[0, alone["input_ids"].shape[1]:], skip_special_tokens=True) == batch[row]
    return [t.strip() for t in batch]


# the shipped recipes' pairs (recipes/vpgtrans/): opt2.7b -> opt6.7b, opt6.7b -> llama7b / vicuna7b
@pytest.mark.parametrize(("source", "target"), [("opt2.7b", "opt6.7b"), ("opt6.7b", "llama7b"),
                                                ("opt6.7b", "vicuna7b")])
def test_headline_chain_on_real_layouts(hub: Path, caption_data: tuple[Path, Path], tmp_path: Path,
                                        source: str, target: str) -> None:
    data, images = caption_data
    image = images / "img1.png"
    vpg, merged = tmp_path / "vpg", tmp_path / "merged"
    invoke(["transfer", "--src", source, "--dst", target, "--data", f"jsonl:{data}", "--images", str(images),
            "--out", str(vpg), "warmup.max_steps=1", "train.max_steps=1", "train.batch_size=2",
            "train.precision=no"])
    assert read_artifact(vpg).manifest["recipe"]["train"]["precision"] == "no"
    invoke(["merge", str(vpg), "--out", str(merged)])
    check_saved_tokenizer(merged)

    from vltool.eval.predictors import load_predictor
    from vltool.models import vlm

    predictor = load_predictor(str(vpg))  # vltool's own model, from the vpg artifact
    ours_ids = vlm.VLTextLayout(predictor.tokenizer, NUM_QUERY_TOKENS,
                                predictor.blip2.config.image_token_index).generation([PROMPT])["input_ids"]
    ids, text = plain_generate(merged, image, PROMPT, 5)
    assert ids == ours_ids[0].tolist()
    assert text == vltool_generate(vpg, image, PROMPT, 5) and text
    pair = [images / "img0.png", images / "img2.png"]
    caption = plain_batch(merged, pair[:1], [""], 4)  # a caption: no prompt at all
    assert caption == [vltool_generate(vpg, pair[0], "", 4)]
    plain_batch(merged, pair, [PROMPT, "question: what is it? answer:"], 4)

    report = tmp_path / "eval.json"
    invoke(["eval", str(merged), "--data", f"jsonl:{data}", "--images", str(images), "--out", str(report),
            "--max-new-tokens", "3"])
    assert str(merged) in json.loads(report.read_text())["metrics"][f"jsonl:{data}"]

    mma, mma_merged = tmp_path / "mma", tmp_path / "mma-merged"
    invoke(["tune-mma", "--model", str(vpg), "--front-end", "qformer", "--data", f"jsonl:{data}",
            "--images", str(images), "--out", str(mma), "train.max_steps=1", "train.batch_size=2",
            "adapter.vision=false", "train.precision=no"])
    invoke(["merge", str(mma), "--out", str(mma_merged)])
    check_saved_tokenizer(mma_merged)
    from vltool.models.mma.layout import VISUAL, image_prompt

    mma_predictor = load_predictor(str(mma_merged))
    trained = mma_predictor.collator.batch([mma_predictor.preprocess(image)], [PROMPT], None)["input_ids"][0]
    index = mma_predictor.model.lm.config.vocab_size - 1
    ids, text = plain_generate(mma_merged, image, image_prompt(PROMPT, NUM_QUERY_TOKENS), 4)
    config = json.loads((mma_merged / "config.json").read_text())
    assert ids == trained.masked_fill(trained == VISUAL, config["image_token_index"]).tolist()
    assert index >= config["image_token_index"]
    assert text == vltool_generate(mma_merged, image, PROMPT, 4) and text
    plain_batch(mma_merged, pair[:1], [image_prompt("", NUM_QUERY_TOKENS)], 3)
    plain_batch(mma_merged, pair, [image_prompt(p, NUM_QUERY_TOKENS) for p in (PROMPT, "describe the picture.")], 3)
    manifest = read_artifact(mma_merged).manifest
    assert manifest["prompt_template"] == image_prompt("{prompt}", NUM_QUERY_TOKENS)


def test_pre_dec_2024_blip2_snapshot_works_as_a_source(hub: Path, caption_data: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    """A Salesforce/blip2-opt-2.7b snapshot from before the hub update (no <image>, no
    image_token_index, 50272-row embeddings, .bin shards) as --src, and as a model to predict with."""
    data, images = caption_data
    old = f"Salesforce/blip2-opt-2.7b@{OLD_BLIP2_REVISION}"
    vpg, merged = tmp_path / "vpg", tmp_path / "merged"
    invoke(["transfer", "--src", old, "--dst", "opt2.7b", "--data", f"jsonl:{data}", "--images", str(images),
            "--out", str(vpg), "warmup.max_steps=1", "train.max_steps=1", "train.batch_size=2",
            "train.precision=no"])
    assert "snapshots/" + OLD_BLIP2_REVISION in read_artifact(vpg).manifest["inputs"]["src"]["source"]
    invoke(["merge", str(vpg), "--out", str(merged)])
    check_saved_tokenizer(merged)
    plain_batch(merged, [images / "img0.png", images / "img1.png"], [PROMPT, "question: what is it? answer:"], 3)
    # the old snapshot itself: vltool adds <image> in a spare embedding row, as the update did
    from vltool.sources.open_model import open_model

    opened = open_model(old, "source")
    rows = json.loads((opened.path / "config.json").read_text())["text_config"]["vocab_size"]
    embeddings = opened.language_model.get_input_embeddings().num_embeddings
    assert opened.image_token_index == opened.model.config.image_token_index < rows == embeddings  # no resize
    assert vltool_generate(Path(snapshot(hub, "Salesforce/blip2-opt-2.7b").parents[0] / OLD_BLIP2_REVISION),
                           images / "img0.png", PROMPT, 3)


def test_precision_no_in_a_recipe_file(tmp_path: Path) -> None:
    """YAML reads a bare ``no`` as False; ``precision: no`` must still mean precision "no"."""
    from vltool.config.loader import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("src: opt2.7b\ndst: vicuna7b\ntrain:\n  precision: no\n  max_steps: 1\n")
    assert load_recipe(recipe, "transfer").train.precision == "no"
    flags = {"src": "opt2.7b", "dst": "vicuna7b"}
    assert load_recipe(None, "transfer", ["train.precision=no", "train.max_steps=1"], flags).train.precision == "no"
    recipe.write_text("stage: tune-mma\ntrain:\n  precision: off\n  max_steps: 1\n")
    assert load_recipe(recipe, "tune-mma", [], {"model": "vicuna7b"}).train.precision == "no"


def test_image_token_rows_are_deterministic(hub: Path) -> None:
    """Adding <image> to a reloaded target gives the rows training had: merge rebuilds the same model."""
    from transformers import AutoTokenizer

    from vltool.sources.hf_blip2 import ensure_image_token, load_causal_lm

    folder = snapshot(hub, "lmsys/vicuna-7b-v1.1")
    grown = []
    for _ in range(2):
        tokenizer, lm = AutoTokenizer.from_pretrained(str(folder)), load_causal_lm(folder)
        rows = lm.get_input_embeddings().num_embeddings
        index = ensure_image_token(tokenizer, lm)
        assert index == rows == len(tokenizer) - 1 and ensure_image_token(tokenizer, lm) == index
        grown.append((lm.get_input_embeddings().weight[index].clone(), lm.get_output_embeddings().weight[index].clone()))
    assert all(torch.equal(a, b) for a, b in zip(*grown))
    opt = snapshot(hub, "facebook/opt-6.7b")
    tokenizer, lm = AutoTokenizer.from_pretrained(str(opt)), load_causal_lm(opt)
    rows = lm.get_input_embeddings().num_embeddings
    assert ensure_image_token(tokenizer, lm) < rows == lm.get_input_embeddings().num_embeddings  # a spare row
