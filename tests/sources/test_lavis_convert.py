"""LAVIS BLIP-2 .pth -> HF Blip2ForConditionalGeneration: key map, q/v bias, shape checks, safety.

The LAVIS checkpoints here are written with the real LAVIS tensor names (PAPERS.md 1), spelled
out independently of vltool's map; numerical parity with LAVIS's own code is test_lavis_parity.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support.tiny_models import IMAGE, Q, qformer_config, tiny_opt, vision_config, word_tokenizer
from transformers import Blip2ForConditionalGeneration

from vltool.errors import UserError
from vltool.sources.convert import convert_lavis
from vltool.sources.hf_blip2 import load_blip2_parts

V, H, VI, HI, LLM_W = 32, 32, 64, 64, 48  # ViT / Q-Former widths and FFN sizes, LLM width


def lavis_state(seed: int = 0, vision_layers: int = 1, qformer_layers: int = 2, frequency: int = 2,
                llm_width: int = LLM_W, with_vit: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    s: dict[str, torch.Tensor] = {}
    if with_vit:
        patches = (IMAGE // 14) ** 2
        s.update({"visual_encoder.cls_token": r(1, 1, V), "visual_encoder.pos_embed": r(1, patches + 1, V),
                  "visual_encoder.patch_embed.proj.weight": r(V, 3, 14, 14),
                  "visual_encoder.patch_embed.proj.bias": r(V)})
        for i in range(vision_layers):
            b = f"visual_encoder.blocks.{i}."
            s.update({b + "norm1.weight": 1 + r(V), b + "norm1.bias": r(V), b + "attn.qkv.weight": r(3 * V, V),
                      b + "attn.q_bias": r(V), b + "attn.v_bias": r(V), b + "attn.proj.weight": r(V, V),
                      b + "attn.proj.bias": r(V), b + "norm2.weight": 1 + r(V), b + "norm2.bias": r(V),
                      b + "mlp.fc1.weight": r(VI, V), b + "mlp.fc1.bias": r(VI), b + "mlp.fc2.weight": r(V, VI),
                      b + "mlp.fc2.bias": r(V)})
    s.update({"ln_vision.weight": 1 + r(V), "ln_vision.bias": r(V), "query_tokens": r(1, Q, H),
              "Qformer.bert.embeddings.LayerNorm.weight": 1 + r(H), "Qformer.bert.embeddings.LayerNorm.bias": r(H),
              "Qformer.bert.embeddings.word_embeddings.weight": r(30, H),
              "Qformer.bert.embeddings.position_embeddings.weight": r(64, H),
              "Qformer.bert.embeddings.position_ids": torch.arange(64).unsqueeze(0),
              "Qformer.cls.predictions.bias": r(30), "opt_proj.weight": r(llm_width, H), "opt_proj.bias": r(llm_width)})

    def attention(prefix: str, kv_width: int) -> None:
        s.update({prefix + "self.query.weight": r(H, H), prefix + "self.query.bias": r(H),
                  prefix + "self.key.weight": r(H, kv_width), prefix + "self.key.bias": r(H),
                  prefix + "self.value.weight": r(H, kv_width), prefix + "self.value.bias": r(H),
                  prefix + "output.dense.weight": r(H, H), prefix + "output.dense.bias": r(H),
                  prefix + "output.LayerNorm.weight": 1 + r(H), prefix + "output.LayerNorm.bias": r(H)})

    for i in range(qformer_layers):
        layer = f"Qformer.bert.encoder.layer.{i}."
        attention(layer + "attention.", H)
        if i % frequency == 0:
            attention(layer + "crossattention.", V)
        for ffn in ("", "_query"):  # the text FFN (skipped) and the query FFN (kept)
            s.update({layer + f"intermediate{ffn}.dense.weight": r(HI, H), layer + f"intermediate{ffn}.dense.bias": r(HI),
                      layer + f"output{ffn}.dense.weight": r(H, HI), layer + f"output{ffn}.dense.bias": r(H),
                      layer + f"output{ffn}.LayerNorm.weight": 1 + r(H), layer + f"output{ffn}.LayerNorm.bias": r(H)})
    return s


@pytest.fixture
def llm_dir(tmp_path: Path) -> Path:
    tok = word_tokenizer()
    folder = tmp_path / "tiny-opt"
    tiny_opt(len(tok) + 3, width=LLM_W).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, Path]:
    paths = {"vision_config": tmp_path / "vision.json", "qformer_config": tmp_path / "qformer.json"}
    paths["vision_config"].write_text(json.dumps(vision_config().to_dict()))
    paths["qformer_config"].write_text(json.dumps(qformer_config().to_dict()))
    return paths


def test_converted_folder_loads_in_transformers_with_every_tensor_in_place(tmp_path: Path, llm_dir: Path,
                                                                            configs: dict[str, Path]) -> None:
    state = lavis_state()
    pth = tmp_path / "blip2.pth"
    torch.save({"model": state, "config": {"arch": "blip2_opt", "model_type": "pretrain_opt2.7b"}}, pth)
    report = convert_lavis(pth, str(llm_dir), tmp_path / "hf", **configs)
    assert report["projector"] == "opt_proj" and report["num_query_tokens"] == Q
    assert report["tensors_skipped"] == {"Q-Former LM head (stage 1 only)": 1, "Q-Former text embeddings (stage 1)": 3,
                                         "Q-Former text FFN (stage 1 only)": 12}
    model = Blip2ForConditionalGeneration.from_pretrained(str(tmp_path / "hf"))
    sd = model.state_dict()
    q, v = state["visual_encoder.blocks.0.attn.q_bias"], state["visual_encoder.blocks.0.attn.v_bias"]
    assert torch.equal(sd["vision_model.encoder.layers.0.self_attn.qkv.bias"], torch.cat([q, torch.zeros(V), v]))
    pairs = {
        "vision_model.embeddings.class_embedding": "visual_encoder.cls_token",
        "vision_model.embeddings.position_embedding": "visual_encoder.pos_embed",
        "vision_model.encoder.layers.0.self_attn.projection.weight": "visual_encoder.blocks.0.attn.proj.weight",
        "vision_model.encoder.layers.0.layer_norm2.bias": "visual_encoder.blocks.0.norm2.bias",
        "vision_model.post_layernorm.weight": "ln_vision.weight",
        "qformer.layernorm.bias": "Qformer.bert.embeddings.LayerNorm.bias",
        "qformer.encoder.layer.0.attention.attention.query.weight":
            "Qformer.bert.encoder.layer.0.attention.self.query.weight",
        "qformer.encoder.layer.0.crossattention.attention.value.weight":
            "Qformer.bert.encoder.layer.0.crossattention.self.value.weight",
        "qformer.encoder.layer.1.output_query.LayerNorm.weight":
            "Qformer.bert.encoder.layer.1.output_query.LayerNorm.weight",
        "query_tokens": "query_tokens", "language_projection.weight": "opt_proj.weight",
    }
    for hf_key, lavis_key in pairs.items():
        assert torch.equal(sd[hf_key], state[lavis_key]), hf_key
    assert "qformer.encoder.layer.1.crossattention.attention.key.weight" not in sd  # every 2nd layer only
    assert model.config.image_token_index == report["image_token_index"]
    # the converted folder is a valid --src: the VPG parts come back without the LLM
    parts = load_blip2_parts(tmp_path / "hf")
    assert torch.equal(parts.projector.weight, state["opt_proj.weight"])
    assert torch.equal(parts.query_tokens, state["query_tokens"])


def test_vit_from_its_own_file_when_the_checkpoint_has_none(tmp_path: Path, llm_dir: Path,
                                                           configs: dict[str, Path]) -> None:
    full = lavis_state(vision_layers=2)
    torch.save({"model": lavis_state(with_vit=False)}, tmp_path / "stage2.pth")
    with pytest.raises(UserError, match="--vision PATH.pth"):
        convert_lavis(tmp_path / "stage2.pth", str(llm_dir), tmp_path / "hf", **configs)
    # EVA's own file: no prefix, one block more than BLIP-2 uses, a final norm and head
    eva = {k.removeprefix("visual_encoder."): t for k, t in full.items() if k.startswith("visual_encoder.")}
    eva.update({"norm.weight": torch.ones(V), "head.weight": torch.zeros(10, V)})
    torch.save(eva, tmp_path / "eva_vit_g.pth")
    report = convert_lavis(tmp_path / "stage2.pth", str(llm_dir), tmp_path / "hf", vit=tmp_path / "eva_vit_g.pth",
                           **configs)  # vision config has 1 layer: block 1, norm and head are dropped
    assert report["vit_blocks_dropped"] == 13 + 2 and report["vit_from"].endswith("eva_vit_g.pth")
    sd = Blip2ForConditionalGeneration.from_pretrained(str(tmp_path / "hf")).state_dict()
    assert torch.equal(sd["vision_model.encoder.layers.0.mlp.fc1.weight"], full["visual_encoder.blocks.0.mlp.fc1.weight"])
    # the convert stage names that input "vision", as vpg and adapters artifacts do (#24; before: "vit")
    from vltool.stages import convert

    convert.run(tmp_path / "stage2.pth", str(llm_dir), tmp_path / "art", vision=tmp_path / "eva_vit_g.pth", **configs)
    inputs = json.loads((tmp_path / "art" / "manifest.json").read_text())["inputs"]
    assert inputs["vision"]["source"] == str((tmp_path / "eva_vit_g.pth").resolve()) and "vit" not in inputs


def test_shape_mismatches_and_unknown_tensors_are_named(tmp_path: Path, llm_dir: Path,
                                                       configs: dict[str, Path]) -> None:
    pth = tmp_path / "x.pth"
    torch.save({"model": lavis_state()}, pth)
    with pytest.raises(UserError, match=r"tensor vision_model\..* has shape .*--vision-config"):
        convert_lavis(pth, str(llm_dir), tmp_path / "a")  # defaults to EVA ViT-g: 1408 wide
    with pytest.raises(UserError, match=r"tensor qformer\..*--qformer-config"):
        convert_lavis(pth, str(llm_dir), tmp_path / "b", vision_config=configs["vision_config"])
    torch.save({"model": lavis_state(llm_width=64)}, pth)
    with pytest.raises(UserError, match="opt_proj.weight outputs 64 features but the LLM .* is 48 wide"):
        convert_lavis(pth, str(llm_dir), tmp_path / "c", **configs)
    torch.save({"model": {**lavis_state(), "Qformer.bert.pooler.dense.weight": torch.zeros(H, H)}}, pth)
    with pytest.raises(UserError, match="unexpected tensor Qformer.bert.pooler.dense.weight"):
        convert_lavis(pth, str(llm_dir), tmp_path / "d", **configs)
    assert not (tmp_path / "a").exists()


class NotATensor:
    """Anything a weights-only unpickler must refuse."""


def test_pickled_objects_are_refused(tmp_path: Path, llm_dir: Path) -> None:
    pth = tmp_path / "evil.pth"
    torch.save({"model": lavis_state(), "config": NotATensor()}, pth)
    with pytest.raises(UserError, match="weights_only=True"):
        convert_lavis(pth, str(llm_dir), tmp_path / "hf")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        convert_lavis(tmp_path / "broken.pth", str(llm_dir), tmp_path / "hf")


def test_vltool_convert_writes_a_model_artifact_and_refuses_to_overwrite(tmp_path: Path, llm_dir: Path,
                                                                          configs: dict[str, Path]) -> None:
    from support.run import invoke
    from typer.testing import CliRunner

    from vltool.artifacts import read_artifact
    from vltool.cli import app

    pth = tmp_path / "blip2.pth"
    torch.save({"model": lavis_state(), "config": {"arch": "blip2_opt"}}, pth)
    out = tmp_path / "converted"
    args = ["convert", str(pth), "--dst", str(llm_dir), "--out", str(out),
            "--vision-config", str(configs["vision_config"]), "--qformer-config", str(configs["qformer_config"])]
    invoke(args)
    art = read_artifact(out)  # verifies every file's sha256
    assert art.kind == "model" and art.manifest["format"] == "Blip2ForConditionalGeneration"
    mapped = art.manifest["metrics"]["tensors_mapped"]
    # 16 stage-1-only tensors skipped; the one ViT block's q_bias + v_bias become a single qkv bias
    assert mapped == len(lavis_state()) - 16 - 1 and art.manifest["metrics"]["tensors_skipped"] == 16
    assert set(art.manifest["inputs"]) == {"checkpoint", "llm"}
    Blip2ForConditionalGeneration.from_pretrained(str(out))
    assert not list(tmp_path.glob(".tmp-*"))  # nothing half-written left behind

    again = CliRunner().invoke(app, args)  # main() turns these UserErrors into one line and exit 2
    assert isinstance(again.exception, UserError) and "--force" in str(again.exception)
    missing = CliRunner().invoke(app, ["convert", str(tmp_path / "nope.pth"), "--llm", str(llm_dir),
                                       "--out", str(tmp_path / "x")])
    assert isinstance(missing.exception, UserError) and "nope.pth does not exist" in str(missing.exception)


def stage1_state(seed: int = 0, embed: int = 16) -> dict[str, torch.Tensor]:
    """LAVIS's blip2_pretrained.pth layout: Q-Former with its text side and ITC/ITM/ITG heads, no projector/LLM."""
    g = torch.Generator().manual_seed(seed + 1)
    s = {k: v for k, v in lavis_state(seed).items() if not k.startswith("opt_proj.")}
    s.update({"vision_proj.weight": torch.randn(embed, H, generator=g), "vision_proj.bias": torch.randn(embed, generator=g),
              "text_proj.weight": torch.randn(embed, H, generator=g), "text_proj.bias": torch.randn(embed, generator=g),
              "itm_head.weight": torch.randn(2, H, generator=g), "itm_head.bias": torch.randn(2, generator=g),
              "temp": torch.tensor(0.07), "Qformer.cls.predictions.transform.dense.weight": torch.randn(H, H, generator=g),
              "Qformer.cls.predictions.decoder.weight": torch.randn(30, H, generator=g)})
    return s


def test_stage1_checkpoint_converts_to_an_image_text_retrieval_folder(tmp_path: Path, llm_dir: Path,
                                                                      configs: dict[str, Path]) -> None:
    from transformers import Blip2ForImageTextRetrieval

    from vltool.sources.stage1 import load_stage1

    state = stage1_state()
    pth = tmp_path / "blip2_pretrained.pth"
    torch.save({"model": state}, pth)
    with pytest.raises(UserError, match="stage-1 checkpoint .* drop --dst"):
        convert_lavis(pth, str(llm_dir), tmp_path / "x", **configs)
    report = convert_lavis(pth, None, tmp_path / "s1", **configs)
    assert report["format"] == "Blip2ForImageTextRetrieval" and report["stage"] == 1
    assert report["tensors_skipped"] == {"Q-Former LM head (image-grounded generation only)": 3,
                                         "ITC temperature (no place in Blip2ForImageTextRetrieval)": 1,
                                         "position ids (rebuilt by transformers)": 1}
    model = Blip2ForImageTextRetrieval.from_pretrained(str(tmp_path / "s1"))
    sd = model.state_dict()
    pairs = {"embeddings.word_embeddings.weight": "Qformer.bert.embeddings.word_embeddings.weight",
             "qformer.layernorm.weight": "Qformer.bert.embeddings.LayerNorm.weight",
             "qformer.encoder.layer.0.intermediate.dense.weight": "Qformer.bert.encoder.layer.0.intermediate.dense.weight",
             "qformer.encoder.layer.1.output_query.dense.bias": "Qformer.bert.encoder.layer.1.output_query.dense.bias",
             "qformer.encoder.layer.0.crossattention.attention.key.weight":
                 "Qformer.bert.encoder.layer.0.crossattention.self.key.weight",
             "vision_projection.weight": "vision_proj.weight", "text_projection.bias": "text_proj.bias",
             "itm_head.weight": "itm_head.weight", "vision_model.post_layernorm.bias": "ln_vision.bias",
             "query_tokens": "query_tokens"}
    for hf_key, lavis_key in pairs.items():
        assert torch.equal(sd[hf_key], state[lavis_key]), hf_key
    # plain transformers runs it (image-text contrastive scores)
    out = model(pixel_values=torch.randn(1, 3, IMAGE, IMAGE), input_ids=torch.tensor([[1, 2, 3]]))
    assert out.logits_per_image.shape == (1, 1)

    # as the TFS start: only the query path, the queries and ln_vision; the ViT must be the source's
    start = load_stage1(str(tmp_path / "s1"), vision_model=model.vision_model)
    assert not any(".intermediate." in k or (".output." in k and "attention" not in k)
                   for k in start.qformer.state_dict())
    assert torch.equal(start.qformer.state_dict()["encoder.layer.1.output_query.LayerNorm.weight"],
                       state["Qformer.bert.encoder.layer.1.output_query.LayerNorm.weight"])
    assert torch.equal(start.query_tokens, state["query_tokens"]) and torch.equal(start.ln_vision["weight"],
                                                                                  state["ln_vision.weight"])
    other = Blip2ForImageTextRetrieval.from_pretrained(str(tmp_path / "s1")).vision_model
    with torch.no_grad():
        other.embeddings.patch_embedding.weight.add_(1.0)
    with pytest.raises(UserError, match="its ViT differs from the source's"):
        load_stage1(str(tmp_path / "s1"), vision_model=other)
    with pytest.raises(UserError, match="is not a BLIP-2 stage-1 model"):
        load_stage1(str(llm_dir))
    torch.save({"model": {k: v for k, v in state.items() if not k.startswith("Qformer.bert.embeddings.word")}}, pth)
    with pytest.raises(UserError, match="needs embeddings.word_embeddings.weight"):
        convert_lavis(pth, None, tmp_path / "s2", **configs)
