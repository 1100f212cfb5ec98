"""Anything ``vltool eval`` can score, behind one ``generate(samples) -> texts`` interface.

A vpg artifact, a merged/HF BLIP-2 folder and a plain causal LM (alias or folder) all become a
``Predictor``. Image samples go through the VPG; text-only samples go to the language model
alone, which is how a VPGTrans model answers a question without a picture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vltool.artifacts import read_artifact
from vltool.data.device_pixels import normalise, normalise_batch, pixels_on_device, scale_of
from vltool.data.image_batches import image_chunks
from vltool.data.sample import Sample
from vltool.data.text_batches import TextEncoder
from vltool.data.vl_dataset import image_preprocessor
from vltool.errors import UserError
from vltool.models import vlm
from vltool.models.chat_layout import text_layout  # the chat turn when the recipe has `chat`
from vltool.models.mma.build import settings_from
from vltool.models.mma.clip_frontend import ClipFrontEnd
from vltool.models.mma.inject import inject_vision
from vltool.models.mma.layout import MMACollator
from vltool.models.mma.loading import load_adapters
from vltool.models.mma.mma_model import MMAModel
from vltool.models.mma.qformer_frontend import QFormerFrontEnd
from vltool.models.vlm import stop_ids as ids
from vltool.sources.aliases import find_alias
from vltool.sources.hub_cache import split_revision
from vltool.sources.open_model import BLIP2, CAUSAL_LM, open_model, resolve_model


def stop_ids(model, tokenizer, extra: int | None = None) -> list[int]:

    return ids(model, tokenizer, extra)


@dataclass
class GenerationSettings:
    batch_size: int = 16
    max_new_tokens: int = 30
    min_new_tokens: int = 0
    num_beams: int = 1
    prompt: str = ""  # recipe eval.prompt: the prompt of samples that have none (captions); "" keeps the model's
    workers: int = 0  # DataLoader workers decoding the next batches' images (vltool eval / predict)
    length_penalty: float = 1.0  # beam search only (VPGTrans's VQA evaluation: -1)
    temperature: float = 0.0  # > 0: sampled decoding (LaVIN's ScienceQA evaluation: 0.1, top_p 0.75)
    top_p: float = 1.0
    seed: int = 0  # of sampled decoding, so a rerun gives the same text

    def decoding(self) -> dict:
        """``generate`` keyword arguments for the search these settings describe (each passed only
        where transformers uses it, so it warns about none)."""
        if self.temperature > 0:
            return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                    "num_beams": self.num_beams}
        out: dict = {"do_sample": False, "num_beams": self.num_beams}
        if self.num_beams > 1:
            out["length_penalty"] = self.length_penalty
        return out


def seeded(cfg: GenerationSettings, batch: int):
    """A context in which sampled decoding of batch number ``batch`` draws from ``cfg.seed`` (the
    process's RNG states are restored afterwards); greedy and beam search need no seed."""
    import contextlib

    if cfg.temperature <= 0:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def fork():
        gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=gpus):
            torch.manual_seed(cfg.seed * 1_000_003 + batch)  # seeds the CPU and every GPU
            yield

    return fork()


def with_prompt(samples: Sequence[Sample], prompt: str) -> list[Sample]:
    """Samples without a prompt of their own get ``prompt`` (the recipe's ``eval.prompt``)."""
    from dataclasses import replace

    return [replace(s, prompt=prompt) if prompt and not s.prompt else s for s in samples]


def _answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, int]]:
    """Per row: (summed NLL of the labelled tokens, their count), labels shifted as a causal LM's."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:].to(logits.device)
    mask = labels != -100
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    return [(float((n * m).sum()), int(m.sum())) for n, m in zip(nll, mask)]


class Predictor:
    """Batched generation with the KV cache (transformers' ``generate``)."""

    def __init__(self, name: str, lm, tokenizer, blip2=None, preprocess=None, layout=None) -> None:
        self.name = name
        self.lm, self.tokenizer, self.blip2 = lm, tokenizer, blip2
        self.preprocess, self.layout = preprocess, layout
        self.text = TextEncoder(tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def to(self, device: torch.device | str) -> Predictor:
        """Move the whole model (VPG and LLM, or the MMA model) to ``device``; inputs follow it."""
        (self.blip2 if self.blip2 is not None else self.lm).to(device)
        return self

    def _generate_text(self, prompts: list[str], cfg: GenerationSettings) -> list[str]:
        batch = self.text.generation_batch(prompts)
        out = self.lm.generate(input_ids=batch["input_ids"].to(self.device),
                               attention_mask=batch["attention_mask"].to(self.device),
                               max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens,
                               pad_token_id=self.text.pad_id, eos_token_id=stop_ids(self.lm, self.tokenizer),
                               **cfg.decoding())
        new = out[:, batch["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _generate_images(self, samples: list[Sample], images: list, cfg: GenerationSettings) -> list[str]:

        # uint8 pixels from the workers are normalised here, on the model's device
        pixels = normalise(torch.stack(images).to(self.device), scale_of(self.preprocess))
        return vlm.generate(self.blip2, self.layout, pixels, [s.prompt for s in samples],
                            max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens, **cfg.decoding())

    @torch.no_grad()
    def generate(self, samples: Sequence[Sample], cfg: GenerationSettings, progress=None) -> list[str]:
        samples = with_prompt(samples, cfg.prompt)
        out: list[str | None] = [None] * len(samples)
        with_image = [i for i, s in enumerate(samples) if s.image is not None]
        text_only = [i for i, s in enumerate(samples) if s.image is None]
        if with_image and self.blip2 is None:
            raise UserError(f"{self.name} is a text-only model but the data has images; give a vpg artifact "
                            f"or a BLIP-2 model")
        done = 0
        image_batches = [with_image[i:i + cfg.batch_size] for i in range(0, len(with_image), cfg.batch_size)]
        text_batches = [text_only[i:i + cfg.batch_size] for i in range(0, len(text_only), cfg.batch_size)]
        decoded = image_chunks(samples, image_batches, self.preprocess, cfg.workers) if image_batches else iter(())
        for number, chunk in enumerate([*image_batches, *text_batches]):
            batch = [samples[i] for i in chunk]
            with seeded(cfg, number):
                if batch[0].image is not None:
                    texts = self._generate_images(batch, next(decoded), cfg)
                else:
                    texts = self._generate_text([s.prompt for s in batch], cfg)
            for i, t in zip(chunk, texts):
                out[i] = t
            done += len(chunk)
            if progress:
                progress(done)
        return [t or "" for t in out]

    @torch.no_grad()
    def answer_nll(self, samples: Sequence[Sample], batch_size: int = 16) -> list[tuple[float, int]]:
        """Teacher-forced NLL of each text-only sample's answer (and EOS) after its prompt: perplexity."""
        out: list[tuple[float, int]] = []
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            batch = self.text.training_batch([s.prompt for s in chunk], [s.answer for s in chunk])
            logits = self.lm(input_ids=batch["input_ids"].to(self.device),
                             attention_mask=batch["attention_mask"].to(self.device)).logits
            out += _answer_nll(logits, batch["labels"])
        return out


class MMAPredictor(Predictor):
    """LaVIN's layout: [BOS] "Image: " visual tokens / "Image: N/A", prompt; routed per sample."""

    def __init__(self, name: str, model, tokenizer, image_processor, max_length: int = 512) -> None:

        super().__init__(name, model.lm, tokenizer)
        self.model = model.eval()
        self.blip2 = model  # it reads images
        self.preprocess = image_preprocessor(image_processor, uint8=pixels_on_device())
        self.collator = MMACollator(tokenizer, model.front_end.visual_tokens, max_length)

    @torch.no_grad()
    def generate(self, samples: Sequence[Sample], cfg: GenerationSettings, progress=None) -> list[str]:
        samples = with_prompt(samples, cfg.prompt)
        out: list[str] = []
        chunks = [list(range(i, min(i + cfg.batch_size, len(samples)))) for i in range(0, len(samples), cfg.batch_size)]
        for number, (indices, images) in enumerate(zip(chunks, image_chunks(samples, chunks, self.preprocess,
                                                                             cfg.workers))):
            chunk = [samples[i] for i in indices]
            batch = self.collator.batch(images, [s.prompt for s in chunk], None, left_pad=True)
            batch = normalise_batch({k: v.to(self.device) for k, v in batch.items()}, scale_of(self.preprocess))
            with seeded(cfg, number):
                # one beam: the routing weights are set per batch row, which beam search would multiply
                out += self.model.generate(batch, self.tokenizer, cfg.max_new_tokens,
                                           **{k: v for k, v in cfg.decoding().items() if k not in ("length_penalty", "num_beams")},
                                           num_beams=1)
            if progress:
                progress(len(out))
        return out

    @torch.no_grad()
    def answer_nll(self, samples: Sequence[Sample], batch_size: int = 16) -> list[tuple[float, int]]:
        """As ``Predictor.answer_nll``, in LaVIN's layout ("Image: N/A", modality 0 for text-only)."""
        out: list[tuple[float, int]] = []
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            images = [self.preprocess(s.image) if s.image is not None else None for s in chunk]
            batch = self.collator.batch(images, [s.prompt for s in chunk], [s.answer for s in chunk])
            batch = normalise_batch({k: v.to(self.device) for k, v in batch.items()}, scale_of(self.preprocess))
            logits = self.model(batch).logits
            out += _answer_nll(logits, batch["labels"])
        return out


def _blip2_predictor(name: str, model, tokenizer, image_processor, recipe: dict | None = None) -> Predictor:
    """``recipe``: a vpg artifact's, whose end of text and caption prompt the layout follows (an HF
    folder's own stop ids are in its generation config, which ``stop_ids`` always keeps)."""

    model.eval()
    layout = text_layout(tokenizer, model.config.num_query_tokens, model.config.image_token_index, recipe)
    return Predictor(name, model.language_model, tokenizer, model, image_preprocessor(image_processor, uint8=pixels_on_device()),
                     layout)


def _merged_clip_predictor(spec: str, found) -> Predictor:
    """A merged LaVIN-style model: the plain merged LLM folder + ``front_end/`` (CLIP, vision adapters, MLP)."""
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor, CLIPVisionConfig, CLIPVisionModel


    front = found.path / "front_end"
    config = json.loads((front / "mma.json").read_text())
    opened = open_model(found, kinds=(CAUSAL_LM,))
    lm = opened.model.eval()
    vision = CLIPVisionModel(CLIPVisionConfig.from_pretrained(str(front)))
    if config["adapter"]["vision"]:
        inject_vision(vision, settings_from(config["adapter"]))
    front_end = ClipFrontEnd(vision, lm.config.hidden_size, config.get("visual_tokens", 6))
    front_end.load_state_dict(load_file(str(front / "front_end.safetensors")))
    return MMAPredictor(spec, MMAModel(lm, front_end), opened.tokenizer, AutoImageProcessor.from_pretrained(str(front)),
                        config.get("max_length", 512))


def load_predictor(spec: str) -> Predictor:
    """Any model ``open_model`` opens: a vpg or adapters artifact, an HF BLIP-2 folder (merged models
    too, LaVIN-layout ones as MMA models) or a causal LM alias/folder."""

    name = split_revision(spec)[0]
    role = "source" if find_alias(name, "source") and not find_alias(name, "target") else "target"
    found = resolve_model(spec, role, "MODEL")
    if found.artifact_kind == "adapters":

        model, tokenizer, processor, config = load_adapters(found.path)
        return MMAPredictor(spec, model, tokenizer, processor, config["max_length"])
    if found.artifact_kind == "model":

        manifest = read_artifact(found.path, verify=False).manifest
        if manifest.get("layout") == "lavin" and manifest.get("front_end") == "clip":
            return _merged_clip_predictor(spec, found)
        if manifest.get("layout") == "lavin":

            opened = open_model(found, kinds=(BLIP2,))
            return MMAPredictor(spec, MMAModel(opened.model.language_model, QFormerFrontEnd(opened.model)),
                                opened.tokenizer, opened.processor)
    opened = open_model(found)
    if opened.kind == BLIP2:
        # a vpg artifact's recipe, or the text layout a merged folder records (VL-Vicuna's chat turn)
        recipe = opened.manifest.get("recipe") if found.artifact_kind == "vpg" else opened.manifest.get("text_layout")
        return _blip2_predictor(spec, opened.model, opened.tokenizer, opened.processor, recipe)
    return Predictor(spec, opened.model.eval(), opened.tokenizer)
