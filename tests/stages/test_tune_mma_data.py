"""tune-mma reads its training data as transfer does (#24): ``@ratio`` mixes, ``wds:`` shards and
``--skip-bad-images``; and one name per concept (adapter.bottleneck, predict --image-dir, "vision").

The models are built from configs here (a 2-layer LLaMA with a word tokenizer, a 2-block CLIP tower),
so every run takes a second or two and no demo world is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.data_files import write_shard
from support.run import invoke
from support.tiny_models import llama_lm, tiny_clip, word_tokenizer
from transformers import CLIPImageProcessor
from typer.testing import CliRunner

from vltool.artifacts import ArtifactWriter, read_artifact
from vltool.cli import app
from vltool.config import deprecation
from vltool.config.schema import EvalSection, MMARecipe
from vltool.data.mixture import Source
from vltool.data.sample import Sample
from vltool.data.training_data import one_stream
from vltool.errors import UserError
from vltool.models.mma.build import settings_from

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["visual_tokens=2", "data.val=[]", "train.max_steps=2", "train.batch_size=4", "train.num_workers=0",
        "train.warmup_steps=0", "adapter.bottleneck=4"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(LLaMA folder, CLIP folder) for ``--model LM --front-end clip --vision CLIP``."""
    root = tmp_path_factory.mktemp("mma-models")
    tokenizer = word_tokenizer(["Image", "N/A", "yes", "no"])
    torch.manual_seed(0)
    lm = llama_lm(len(tokenizer), 32, 4, kv_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    lm.save_pretrained(str(root / "lm"))
    tokenizer.save_pretrained(str(root / "lm"))
    tiny_clip(2).save_pretrained(str(root / "clip"))
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(
        str(root / "clip"))
    return root / "lm", root / "clip"


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _data(root: Path, corrupt: bool = False) -> tuple[str, str]:
    """(4 image questions, 4 text-only questions) as jsonl files; ``corrupt``: the third image is broken."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 200, 30)).save(root / f"img{i}.png")
    if corrupt:
        (root / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    images = _jsonl(root / "images.jsonl", [{"image": f"img{i}.png", "prompt": "is it green ?", "answer": "yes"}
                                            for i in range(4)])
    text = _jsonl(root / "text.jsonl", [{"prompt": "is the square red ?", "answer": "no"} for _ in range(4)])
    return images, text


def _tune(models: tuple[Path, Path], out: Path, *args: str, overrides: tuple[str, ...] = ()) -> dict:
    lm, clip = models
    invoke(["tune-mma", "-r", "demo/tune-mma", "--model", str(lm), "--front-end", "clip", "--vision", str(clip),
            "--out", str(out), *args, *FAST, *overrides])
    return read_artifact(out).manifest["metrics"]


def test_a_ratio_mix_of_two_sources(models: tuple[Path, Path], tmp_path: Path) -> None:
    images, text = _data(tmp_path / "data")
    metrics = _tune(models, tmp_path / "mma", "--data", f"jsonl:{images}@0.7", "--data", f"jsonl:{text}@0.3",
                    "--images", str(tmp_path / "data"))
    assert metrics["steps"] == 2
    assert (metrics["image_samples"], metrics["text_only_samples"]) == (4, 4)
    assert metrics["data_images"] == 4 and metrics["data_bad_images"] == 0  # checked before training
    assert metrics["data_bad_samples_skipped"] == 0


def test_wds_shards_with_a_text_source(models: tuple[Path, Path], tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(2):
        write_shard(shards / f"{s:03d}.tar", [f"s{s}k{i}" for i in range(4)])
    _, text = _data(tmp_path / "data")
    metrics = _tune(models, tmp_path / "mma", "--data", f"wds:{shards}/{{000..001}}.tar@0.5",
                    "--data", f"jsonl:{text}@0.5")
    # the stream's size is estimated from its first shard: 4 samples x 2 shards
    assert metrics["steps"] == 2 and (metrics["image_samples"], metrics["text_only_samples"]) == (8, 4)


def test_skip_bad_images_skips_and_counts_a_corrupt_image(models: tuple[Path, Path], tmp_path: Path) -> None:
    images, _ = _data(tmp_path / "data", corrupt=True)
    args = ["--data", f"jsonl:{images}", "--images", str(tmp_path / "data")]
    with pytest.raises(UserError, match=r"1 of 4 images cannot be read .*--skip-bad-images"):
        _tune(models, tmp_path / "refused", *args)
    # one step of 4 over 4 samples: every sample is drawn once, the corrupt one replaced by the next
    metrics = _tune(models, tmp_path / "mma", *args, "--skip-bad-images", overrides=("train.max_steps=1",))
    assert metrics["steps"] == 1 and metrics["data_bad_samples_skipped"] == 1
    assert not (tmp_path / ".mma.run").exists()  # the bad-sample notes went with the run folder


def test_specs_without_ratios_are_one_stream_with_ratios_apart(tmp_path: Path) -> None:
    """LaVIN's Mixture-of-Modality Training: a batch mixes text-only and image samples."""
    a = [Sample(f"a{i}", f"{i}.png", "p", "x") for i in range(3)]
    b = [Sample(f"b{i}", None, "p", "y") for i in range(2)]
    stream = Source("wds:s", None, shards=[tmp_path / "000.tar"], size=8)
    joined = one_stream([Source("jsonl:a", None, samples=a, size=3), stream, Source("jsonl:b", None, samples=b, size=2)])
    assert [(s.spec, s.size) for s in joined] == [("jsonl:a+jsonl:b", 5), ("wds:s", 8)]
    assert [s.id for s in joined[0].samples] == ["a0", "a1", "a2", "b0", "b1"]
    apart = [Source("jsonl:a", 0.5, samples=a, size=3), Source("jsonl:b", 0.5, samples=b, size=2)]
    assert one_stream(apart) == apart


def test_adapter_bottleneck_and_its_old_name(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(deprecation, "_SEEN", set())
    new = MMARecipe.model_validate({"model": "m", "adapter": {"bottleneck": 4}})
    old = MMARecipe.model_validate({"model": "m", "adapter": {"dim": 4}})
    assert new.adapter.bottleneck == old.adapter.bottleneck == 4
    assert "adapter.dim is deprecated" in capsys.readouterr().err and "dim" not in old.adapter.model_dump()
    with pytest.raises(ValueError, match="adapter.bottleneck only"):
        MMARecipe.model_validate({"model": "m", "adapter": {"dim": 4, "bottleneck": 8}})
    # an adapters artifact written before #24 names it dim in configs/mma.json, and still loads
    saved = {"groups": 2, "scale": 1.0, "dropout": 0.1, "router": True, "temperature": 10.0}
    assert settings_from({**saved, "dim": 4}).bottleneck == settings_from({**saved, "bottleneck": 4}).bottleneck == 4


def test_predict_image_dir_and_its_old_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(deprecation, "_SEEN", set())
    empty = tmp_path / "empty"
    empty.mkdir()
    runner = CliRunner()
    for flag in ("--image-dir", "--images"):
        result = runner.invoke(app, ["predict", "demo-blip2-opt-s", flag, str(empty)])
        assert isinstance(result.exception, UserError), result.output
        assert str(result.exception).startswith(f"--image-dir {empty} has no image files")
    assert "vltool predict --images is deprecated" in result.output
    shown = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"}).output
    assert "--image-dir" in shown and "--images " not in shown  # the old name works, hidden


def test_predict_generates_with_the_schemas_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults that are not eval's own are caught: the schema's are changed here, predict must follow."""
    from vltool.eval import predictors
    from vltool.stages import predict

    class Shifted(EvalSection):
        max_new_tokens: int = 7
        num_beams: int = 3
        batch_size: int = 5

    seen = []

    class Fake:
        blip2 = None

        def to(self, device):
            return self

        def generate(self, samples, settings, progress=None):
            seen.append(settings)
            return ["ok" for _ in samples]

    monkeypatch.setattr(predict, "EvalSection", Shifted)
    monkeypatch.setattr(predictors, "load_predictor", lambda spec: Fake())
    monkeypatch.setattr(predict, "load_predictor", lambda spec: Fake(), raising=False)  # imported at the top
    [got] = predict.run("any", prompt="a question")
    assert got.prediction == "ok"
    assert (seen[0].max_new_tokens, seen[0].num_beams, seen[0].batch_size) == (7, 3, 5)
    predict.run("any", prompt="a question", max_new_tokens=2, num_beams=1, batch_size=1)
    assert (seen[1].max_new_tokens, seen[1].num_beams, seen[1].batch_size) == (2, 1, 1)


def test_an_old_converted_artifact_says_vit_and_reads_as_vision(tmp_path: Path) -> None:
    out = tmp_path / "converted"
    with ArtifactWriter(out, "model") as writer:  # what `vltool convert --vision` wrote before #24
        writer.add_input("vit", str(tmp_path / "eva_vit_g.pth"), "sha256:0", what="EVA ViT .pth")
    assert "vit" in json.loads((out / "manifest.json").read_text())["inputs"]
    inputs = read_artifact(out).manifest["inputs"]
    assert "vit" not in inputs and inputs["vision"]["source"] == str(tmp_path / "eva_vit_g.pth")
