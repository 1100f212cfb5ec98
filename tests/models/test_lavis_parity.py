"""Parity with LAVIS's own code (opt-in: ``pytest -m lavis``; .ci/run runs it when time allows).

LAVIS pins an old transformers, so its modules run in an isolated venv, built once and cached
(``$VLTOOL_LAVIS_VENV``, default ``~/.cache/vltool-lavis-venv``): ``salesforce-lavis==1.0.2``
with ``--no-deps``, ``transformers==4.26.1`` (what ``Qformer.py`` imports) and ``torch==2.13.0``
taken from a local CPU wheel (pip's find-links) or the PyTorch CPU index as ``+cpu`` -- never a
plain ``torch`` resolved from PyPI, which would be a multi-GB CUDA build. Building needs PyPI.

In that venv, LAVIS's ``Qformer.py`` and ``eva_vit.py`` are loaded by file path (not through
``lavis/__init__``, which pulls in its whole dependency tree; ``eva_vit.py``'s three timm
helpers and LAVIS's download helper are stubbed, they are not used at inference), a tiny BLIP-2
is built with LAVIS's classes, noised so no bias is trivially zero, and saved as a LAVIS
checkpoint with its outputs. vltool converts the checkpoint and transformers must reproduce the
ViT, Q-Former and projector outputs within 1e-5.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.lavis

PINS = {"lavis": "salesforce-lavis==1.0.2", "transformers": "transformers==4.26.1", "torch": "2.13.0"}
VENV = Path(os.environ.get("VLTOOL_LAVIS_VENV", str(Path.home() / ".cache" / "vltool-lavis-venv")))
Q = 4

LAVIS_SIDE = r'''
import importlib.machinery, importlib.util, sys, types
from functools import partial
from pathlib import Path

import torch
from torch import nn

out = Path(sys.argv[1])
root = Path(importlib.util.find_spec("lavis").submodule_search_locations[0])

def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

qformer_mod = load("lavis_qformer", root / "models" / "blip2_models" / "Qformer.py")
from transformers import BertConfig

# eva_vit.py's imports that inference never uses: timm's helpers and LAVIS's downloader (stubbed
# after transformers is imported, which probes for a real timm)
layers = types.ModuleType("timm.models.layers")
layers.drop_path = lambda x, p=0.0, training=False: x
layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
layers.trunc_normal_ = nn.init.trunc_normal_
registry = types.ModuleType("timm.models.registry")
registry.register_model = lambda f: f
dist_utils = types.ModuleType("lavis.common.dist_utils")
dist_utils.download_cached_file = lambda *a, **k: None
for name, module in {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                     "timm.models.layers": layers, "timm.models.registry": registry,
                     "lavis": types.ModuleType("lavis"), "lavis.common": types.ModuleType("lavis.common"),
                     "lavis.common.dist_utils": dist_utils}.items():
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = module
eva = load("lavis_eva_vit", root / "models" / "eva_vit.py")

torch.manual_seed(0)
vit = eva.VisionTransformer(img_size=28, patch_size=14, use_mean_pooling=False, embed_dim=32, depth=2, num_heads=2,
                            mlp_ratio=2.0, qkv_bias=True, drop_path_rate=0.0,
                            norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
ln_vision = nn.LayerNorm(32)  # LAVIS's blip2.LayerNorm: eps 1e-5, computed in fp32
config = BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
config.encoder_width = 32
config.add_cross_attention = True
config.cross_attention_freq = 2
config.query_length = 4
Qformer = qformer_mod.BertLMHeadModel(config).eval()
query_tokens = nn.Parameter(torch.zeros(1, 4, 32))
opt_proj = nn.Linear(32, 48)
with torch.no_grad():
    for module in (vit, ln_vision, Qformer, opt_proj):
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    query_tokens.normal_(0.0, 0.5)
state = {"query_tokens": query_tokens.detach()}
for prefix, module in (("visual_encoder.", vit), ("ln_vision.", ln_vision), ("Qformer.", Qformer),
                       ("opt_proj.", opt_proj)):
    state.update({prefix + k: v.clone() for k, v in module.state_dict().items()})
torch.save({"model": state, "config": {"arch": "blip2_opt", "vit": "tiny eva"}}, out / "lavis.pth")

pixel_values = torch.randn(2, 3, 28, 28)
with torch.no_grad():
    vit_out = vit(pixel_values)
    image_embeds = ln_vision(vit_out)
    atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    query_output = Qformer.bert(query_embeds=query_tokens.expand(2, -1, -1), encoder_hidden_states=image_embeds,
                                encoder_attention_mask=atts, return_dict=True).last_hidden_state
    projected = opt_proj(query_output)
torch.save({"pixel_values": pixel_values, "vit": vit_out, "image_embeds": image_embeds,
            "query_output": query_output, "projected": projected}, out / "outputs.pt")
print("lavis side done", sorted(state)[:3], len(state))
'''


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args], check=True)


def _local_torch_wheel() -> str | None:
    """A torch==2.13.0 CPU wheel in pip's find-links, matching this interpreter."""
    dirs = os.environ.get("PIP_FIND_LINKS", "").split()
    found = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"], check=False,
                           capture_output=True, text=True)
    dirs += found.stdout.split() if found.returncode == 0 else []
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in dirs:
        folder = folder.removeprefix("file://")
        wheels = sorted(glob.glob(os.path.join(folder, f"torch-{PINS['torch']}*-{tag}-*.whl")))
        cpu = [w for w in wheels if "+cpu" in w] or wheels
        if cpu:
            return cpu[0]
    return None


def lavis_python() -> Path:
    """The cached venv's interpreter, building the venv on first use."""
    python = VENV / "bin" / "python"
    marker = VENV / "vltool-pins.json"
    if python.is_file() and marker.is_file() and json.loads(marker.read_text()) == PINS:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    wheel = _local_torch_wheel()
    if wheel is not None:
        _pip(python, wheel)  # the wheel file itself; only its small dependencies come from the index
    else:
        _pip(python, f"torch=={PINS['torch']}+cpu", "--extra-index-url", "https://download.pytorch.org/whl/cpu")
    _pip(python, PINS["transformers"], "numpy<2")
    _pip(python, "--no-deps", PINS["lavis"])
    check = subprocess.run([str(python), "-c", "import torch, transformers; print(torch.__version__, "
                            "transformers.__version__, torch.version.cuda)"], capture_output=True, text=True, check=True)
    torch_version, transformers_version, cuda = check.stdout.split()
    assert torch_version.startswith(PINS["torch"]) and cuda == "None", check.stdout
    assert transformers_version == PINS["transformers"].split("==")[1]
    marker.write_text(json.dumps(PINS))
    return python


def test_converted_lavis_checkpoint_matches_lavis_outputs(tmp_path: Path) -> None:
    from support.tiny_models import tiny_opt, word_tokenizer
    from transformers import Blip2ForConditionalGeneration, Blip2QFormerConfig, Blip2VisionConfig

    from vltool.models import vlm
    from vltool.sources.convert import convert_lavis

    python = lavis_python()
    script = tmp_path / "lavis_side.py"
    script.write_text(LAVIS_SIDE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run([str(python), str(script), str(tmp_path)], check=False, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    tok = word_tokenizer()
    llm = tmp_path / "llm"
    tiny_opt(len(tok) + 3, width=48).save_pretrained(str(llm))
    tok.save_pretrained(str(llm))
    vision = Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=28, patch_size=14, layer_norm_eps=1e-6)
    qformer = Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 cross_attention_frequency=2, encoder_hidden_size=32, max_position_embeddings=64)
    (tmp_path / "vision.json").write_text(json.dumps(vision.to_dict()))
    (tmp_path / "qformer.json").write_text(json.dumps(qformer.to_dict()))
    report = convert_lavis(tmp_path / "lavis.pth", str(llm), tmp_path / "hf", vision_config=tmp_path / "vision.json",
                           qformer_config=tmp_path / "qformer.json")
    assert report["tensors_skipped"]["Q-Former text FFN (stage 1 only)"] == 12
    ref = torch.load(tmp_path / "outputs.pt", weights_only=True)
    hf = Blip2ForConditionalGeneration.from_pretrained(str(tmp_path / "hf")).eval()
    px = ref["pixel_values"]
    with torch.no_grad():
        vit = hf.vision_model.encoder(inputs_embeds=hf.vision_model.embeddings(px)).last_hidden_state
        queries = hf.query_tokens.expand(2, -1, -1)
        mask = torch.ones(ref["image_embeds"].shape[:-1], dtype=torch.long)
        query_output = hf.qformer(query_embeds=queries, encoder_hidden_states=ref["image_embeds"],
                                  encoder_attention_mask=mask).last_hidden_state
        projected = hf.language_projection(query_output)
        end_to_end = hf.language_projection(vlm.query_output(hf, px))
    diffs = {name: float((ours - ref[name]).abs().max())
             for name, ours in (("vit", vit), ("query_output", query_output), ("projected", projected))}
    print("max |vltool - LAVIS|:", diffs, "end-to-end:", float((end_to_end - ref["projected"]).abs().max()))
    assert (vit - ref["vit"]).abs().max() <= 1e-5  # EVA blocks incl. q/v bias -> qkv bias
    assert (query_output - ref["query_output"]).abs().max() <= 1e-5
    assert (projected - ref["projected"]).abs().max() <= 1e-5
    # pixels -> projected tokens through vltool's VPG; ln_vision's eps (LAVIS 1e-5, HF 1e-6) is the only gap
    assert (end_to_end - ref["projected"]).abs().max() <= 1e-4
