"""Assembling an MMA model from transformers parts: inject adapters, attach a front end, freeze.

One function per front end, so a stage (or ``--dry-run`` on the meta device) builds exactly the
model it trains: LaVIN's CLIP front end, or the Q-Former front end of a BLIP-2 / VPGTrans model.
Either way only the adapters (with routers), the modality token and the visual projection train.
"""

from __future__ import annotations

from torch import nn

from vltool.models.mma.clip_frontend import ClipFrontEnd
from vltool.models.mma.inject import AdapterSettings, inject, inject_vision
from vltool.models.mma.mma_model import MMAModel
from vltool.models.mma.qformer_frontend import QFormerFrontEnd


def settings_from(adapter: dict) -> AdapterSettings:
    """AdapterSettings from a recipe's ``adapter`` section; adapters artifacts written before #24 call
    the bottleneck ``dim`` in their ``configs/mma.json``, and still load."""
    bottleneck = adapter["bottleneck"] if "bottleneck" in adapter else adapter["dim"]
    return AdapterSettings(bottleneck=bottleneck, groups=adapter["groups"], scale=adapter["scale"],
                           dropout=adapter["dropout"], router=adapter["router"], temperature=adapter["temperature"])


def build_clip_mma(lm: nn.Module, vision: nn.Module, settings: AdapterSettings, placement: str = "attn",
                   visual_tokens: int = 6, vision_adapters: bool = True) -> MMAModel:
    """LaVIN: CLIPVisionModel (+ adapters after each block's first norm) -> [CLS] x n -> MLP -> LM."""
    inject(lm, placement, settings)
    if vision_adapters:
        inject_vision(vision, settings)
    model = MMAModel(lm, ClipFrontEnd(vision, lm.config.hidden_size, visual_tokens))
    model.set_trainable()
    return model


def build_qformer_mma(blip2: nn.Module, settings: AdapterSettings, placement: str = "attn",
                      vision_adapters: bool = False) -> MMAModel:
    """The card's pipeline: a BLIP-2 (or VPGTrans) model's VPG + projector in front of the adapted LM."""
    inject(blip2.language_model, placement, settings)
    if vision_adapters:
        inject_vision(blip2.vision_model, settings)
    model = MMAModel(blip2.language_model, QFormerFrontEnd(blip2))
    model.set_trainable()
    return model
