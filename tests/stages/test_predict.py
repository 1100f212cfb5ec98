"""``vltool predict`` answers with eval's own predictor; merged folders carry a README.md model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.run import invoke, vltool
from typer.testing import CliRunner

from vltool.cli import app
from vltool.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
runner = CliRunner()
GEN = ["--max-new-tokens", "6"]


@pytest.fixture(scope="module")
def arts(quick_world_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A vpg artifact (with validation metrics), adapters trained on it, and the vpg merged: built once."""
    root = tmp_path_factory.mktemp("predict-arts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLTOOL_HOME", str(quick_world_home))
        mp.setenv("VLTOOL_DEMO_PROFILE", "quick")
        invoke(["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption",
                "--val-data", "demo:caption", "--out", str(root / "vpg"), "warmup.max_steps=1", "train.max_steps=1",
                "data.max_train_samples=32", "data.max_val_samples=4", "train.batch_size=16",
                "eval.max_new_tokens=4"])
        invoke(["tune-mma", "-r", "demo/tune-mma", "--model", str(root / "vpg"), "--out", str(root / "mma"),
                "train.max_steps=1", "train.batch_size=8", "data.max_train_samples=16", "data.val=[]"])
        invoke(["merge", str(root / "vpg"), "--out", str(root / "merged")])
    return {"vpg": root / "vpg", "mma": root / "mma", "merged": root / "merged"}


def requests_file(folder: Path, with_answer: bool = False) -> tuple[Path, list]:
    """Three image requests (a caption, two VQA questions) and one text-only one, as JSONL."""
    from vltool.data.specs import load_spec

    caption, vqa, text = (load_spec(f"demo:{k}", "test") for k in ("caption", "vqa", "text"))
    rows = [{"id": "cap", "image": caption[0].image, "prompt": ""},
            {"id": "q1", "image": vqa[0].image, "prompt": vqa[0].prompt},
            {"id": "q2", "image": vqa[1].image, "prompt": vqa[1].prompt},
            {"id": "txt", "image": None, "prompt": text[0].prompt}]
    if with_answer:
        rows = [{**r, "answer": "x"} for r in rows]
    path = folder / "requests.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def predict_json(*args: str) -> list[dict]:
    result = invoke(["predict", *args, "--json"])
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("which", ["vpg", "mma", "merged", "demo-blip2-opt-s"])
def test_predict_gives_what_evals_predictor_gives(which: str, arts: dict[str, Path], quick_world: Path,
                                                  tmp_path: Path) -> None:
    from vltool.data.sample import Sample
    from vltool.eval.predictors import GenerationSettings, load_predictor

    model = str(arts.get(which, which))
    path, rows = requests_file(tmp_path)
    got = predict_json(model, "--requests", str(path), *GEN, "--batch-size", "3")
    assert [(g["id"], g["image"], g["prompt"]) for g in got] == [(r["id"], r["image"], r["prompt"]) for r in rows]
    samples = [Sample(r["id"], r["image"], r["prompt"], "") for r in rows]
    expected = load_predictor(model).generate(samples, GenerationSettings(batch_size=3, max_new_tokens=6))
    assert [g["prediction"] for g in got] == expected
    assert all(isinstance(t, str) for t in expected) and any(expected)


def test_predict_matches_vltool_eval_predictions_file(arts: dict[str, Path], quick_world: Path,
                                                       tmp_path: Path) -> None:
    """The same JSONL is eval data and predict requests: the predictions are the same, line for line."""
    path, _ = requests_file(tmp_path, with_answer=True)
    out = tmp_path / "eval.json"
    invoke(["eval", str(arts["vpg"]), "--data", f"jsonl:{path}", *GEN, "--out", str(out)])
    files = json.loads(out.read_text())["predictions"]
    (saved_name,) = files.values()
    saved = [json.loads(x) for x in (tmp_path / saved_name).read_text().splitlines()]
    got = predict_json(str(arts["vpg"]), "--requests", str(path), *GEN)
    assert {s["id"]: s["prediction"] for s in saved} == {g["id"]: g["prediction"] for g in got}


def test_one_image_prints_the_text_and_a_folder_prints_id_tab_text(arts: dict[str, Path], quick_world: Path,
                                                                   tmp_path: Path) -> None:
    import shutil

    from vltool.data.specs import load_spec

    vqa = load_spec("demo:vqa", "test")[:2]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, s in enumerate(vqa):
        shutil.copy(s.image, folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    one = invoke(["predict", str(arts["merged"]), "--image", str(folder / "0.png"), "--prompt", vqa[0].prompt, *GEN])
    many = invoke(["predict", str(arts["merged"]), "--image-dir", str(folder), "--prompt", vqa[0].prompt, *GEN])
    lines = many.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["0.png", "1.png"]
    assert one.stdout.strip() == lines[0].split("\t", 1)[1].strip()
    as_json = predict_json(str(arts["merged"]), "--image-dir", str(folder), "--prompt", vqa[0].prompt, *GEN)
    assert [j["prediction"] for j in as_json] == [line.split("\t", 1)[1] for line in lines]
    assert as_json[0]["image"] == str(folder / "0.png") and as_json[0]["prompt"] == vqa[0].prompt


def test_bad_input_is_one_user_error(arts: dict[str, Path], quick_world: Path, tmp_path: Path) -> None:
    from vltool.data.specs import load_spec

    good = load_spec("demo:caption", "test")[0].image
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["predict", "demo-blip2-opt-s", "--image", str(tmp_path / "nope.jpg")], "1 missing"),
        (["predict", "demo-blip2-opt-s", "--image", str(corrupt)], "1 corrupt"),
        (["predict", "demo-blip2-opt-s", "--image-dir", str(empty)], "has no image files"),
        (["predict", "demo-blip2-opt-s", "--image-dir", str(tmp_path / "missing-dir")], "does not exist"),
        (["predict", "demo-blip2-opt-s", "--image", str(empty)], "is a folder; pass --image-dir"),
        (["predict", "no-such-model", "--image", good], "neither a folder, a file nor a known"),
        (["predict", "demo-llama", "--image", good], "text-only model"),
        (["predict", str(arts["mma"]), "--image", good, "--num-beams", "2"], "decodes greedily"),
        (["predict", "demo-blip2-opt-s"], "nothing to predict"),
        (["predict", "demo-blip2-opt-s", "--image", good, "--image-dir", str(empty)], "give one of"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert isinstance(result.exception, UserError), (args, result.output)
        assert message in str(result.exception), (args, str(result.exception))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.png", "prompt": "x"}\n[1, 2]\n')
    result = runner.invoke(app, ["predict", "demo-blip2-opt-s", "--requests", str(bad)])
    assert isinstance(result.exception, UserError) and "line 2: expected an object" in str(result.exception)


def test_skip_bad_images_answers_the_rest(arts: dict[str, Path], quick_world: Path, tmp_path: Path) -> None:
    from vltool.data.specs import load_spec

    good = load_spec("demo:caption", "test")[0].image
    got = invoke(["predict", str(arts["merged"]), "--image", good, "--image", str(tmp_path / "gone.png"),
                  "--skip-bad-images", *GEN, "--json"])
    rows = [json.loads(line) for line in got.stdout.splitlines()]
    assert [r["image"] for r in rows] == [good] and "skipping 1 requests" in got.stderr


def test_an_alias_of_both_roles_means_its_blip2_for_images(quick_world: Path, tmp_path: Path) -> None:
    """As ``opt2.7b`` is BLIP-2 OPT-2.7B as a source and OPT-2.7B as a target: images need the BLIP-2."""
    from vltool.data.specs import load_spec
    from vltool.demo.home import demo_model_paths
    from vltool.sources.aliases import register_alias, unregister_alias

    paths = demo_model_paths()
    register_alias("both-roles", "source", path=paths["demo-blip2-opt-s"])
    register_alias("both-roles", "target", path=paths["demo-opt-s"])
    try:
        image = load_spec("demo:caption", "test")[0].image
        got = predict_json("both-roles", "--image", image, *GEN)
        assert got == predict_json("demo-blip2-opt-s", "--image", image, *GEN)
        text = predict_json("both-roles", "--prompt", "a red", *GEN)  # no image: the plain LM
        assert text == predict_json("demo-opt-s", "--prompt", "a red", *GEN)
    finally:
        unregister_alias("both-roles", "source")
        unregister_alias("both-roles", "target")


def test_help_lists_every_input_and_option() -> None:
    result = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--image", "--image-dir", "--requests", "--prompt", "--json", "--max-new-tokens", "--num-beams",
                   "--batch-size", "--skip-bad-images"):
        assert option in result.output, option


def test_exit_code_2_and_one_line_from_the_command(quick_world: Path, tmp_path: Path) -> None:
    done = vltool(["predict", "demo-blip2-opt-s", "--image", str(tmp_path / "missing.jpg")], module=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "missing" in done.stderr and not done.stdout


def test_merged_vpg_folder_has_a_model_card_listed_in_its_manifest(arts: dict[str, Path]) -> None:
    import yaml

    merged = arts["merged"]
    card = (merged / "README.md").read_text()
    manifest = json.loads((merged / "manifest.json").read_text())
    assert "README.md" in manifest["files"]
    head = yaml.safe_load(card.split("---")[1])
    assert head["library_name"] == "transformers" and head["pipeline_tag"] == "image-to-text"
    assert {"vltool", "blip-2", "vpgtrans"} <= set(head["tags"]) and "base_model" not in head  # demo: local
    vpg = json.loads((arts["vpg"] / "manifest.json").read_text())
    assert "| VPG source (BLIP-2 ViT + Q-Former) | demo-blip2-opt-s |" in card
    assert f"| target LLM | demo-llama | - | {vpg['inputs']['llm']['source']} |" in card
    final = {k: v for k, v in vpg["metrics"].items() if k.startswith("final_")}
    assert final and manifest["metrics"] == final
    assert all(f"| {key} | " in card for key in final)
    assert "VPGTrans (Zhang et al. 2023" in card and "Blip2ForConditionalGeneration.from_pretrained" in card
    assert "lr x5.0" in card and "1 warm-up + 1 fine-tuning steps run" in card


def test_merged_adapters_card_names_the_whole_chain(arts: dict[str, Path], quick_world: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "merged-mma"
    invoke(["merge", str(arts["mma"]), "--out", str(out)])
    card = (out / "README.md").read_text()
    assert "README.md" in json.loads((out / "manifest.json").read_text())["files"]
    assert "built with VPGTrans then LaVIN MMA on **demo-llama**" in card
    assert "| VPGTrans artifact (the MMA base) |" in card and "| target LLM | demo-llama |" in card
    assert "MM-Adapters: placement" in card and "trainable parameters:" in card
    assert "mixture-of-modality" in card and "image** modality" in card


def test_card_front_matter_names_hub_ids_of_aliases_and_cached_paths() -> None:
    """Real bases: base_model lists hub ids, from an alias or from an HF-cache snapshot path."""
    import yaml

    from vltool.stages.model_card import render

    snap = "/hf/hub/models--lmsys--vicuna-7b-v1.5/snapshots/abc123"
    vpg = {"kind": "vpg", "recipe": {"src": "opt2.7b@51572668da", "dst": snap, "train": {"lr": 1e-4}},
           "inputs": {"vision": {"source": "/hf/hub/models--Salesforce--blip2-opt-2.7b/snapshots/d1", "fingerprint": "ab"},
                      "llm": {"source": snap, "fingerprint": "cd"}},
           "metrics": {"final_cider": 0.912, "final_val_loss": 2.5, "warmup_steps": 3}}
    card = render("out/blip2-vicuna", {"format": "Blip2ForConditionalGeneration", "metrics": {}}, vpg)
    head = yaml.safe_load(card.split("---")[1])
    assert head["base_model"] == ["Salesforce/blip2-opt-2.7b", "lmsys/vicuna-7b-v1.5"]
    assert "| final_cider | 0.912 |" in card and "| final_val_loss | 2.5 |" in card
    clip = {"kind": "adapters", "recipe": {"model": "llama7b", "vision": "clip-vit-l14", "front_end": "clip"},
            "inputs": {"base": {"source": "/models/llama"}, "vision": {"source": "/models/clip"}},
            "metrics": {"after/demo:sqa/accuracy": 61.0, "trainable_params": 3781296}}
    card = render("out/lavin", {"format": "LlamaForCausalLM", "layout": "lavin", "front_end": "clip",
                                "modality": "image"}, clip)
    head = yaml.safe_load(card.split("---")[1])
    assert head["pipeline_tag"] == "text-generation"
    assert head["base_model"] == ["huggyllama/llama-7b", "openai/clip-vit-large-patch14"]
    assert "front_end/" in card and "AutoModelForCausalLM" in card and "| after/demo:sqa/accuracy | 61 |" in card
    assert "trainable parameters: 3,781,296" in card
    lavin = {"format": "Blip2ForConditionalGeneration", "layout": "lavin", "front_end": "qformer",
             "prompt_template": "Image:" + "<image>" * 32 + "{prompt}"}
    card = render("out/m", lavin, {**clip, "recipe": {"model": "opt2.7b", "front_end": "qformer"}})
    assert 'text = "Image:" + "<image>" * 32 + prompt' in card and "processor(images=image, text=text" in card
    assert yaml.safe_load(card.split("---")[1])["base_model"] == ["Salesforce/blip2-opt-2.7b"]
