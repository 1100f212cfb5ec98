"""The HF BLIP-2 format (the Salesforce/blip2-* layout): reading a folder into parts, writing one.

A transfer needs the source's VPG (ViT, ln_vision, Q-Former, query tokens), its projector, and
the *input word embeddings* of the LLM that projector fed (the word converter maps from them),
but not the rest of that LLM: for blip2-opt-2.7b that would be 2.7B parameters read only to be
thrown away. So by default only the VPG and projector tensors (whose ``vision_model.`` /
``qformer.`` / ``language_projection.`` / ``query_tokens`` names the BLIP-2 format fixes) are read
from the (possibly sharded) safetensors / .bin files, into modules built on the meta device (no
random init of ViT-g). Anything of an LLM (its weights, its input embeddings for the word
converter) is loaded through transformers' own ``from_pretrained``, which knows every key layout
real repositories use; the embeddings only when first asked for. ``with_language_model=True``
loads the whole model with ``from_pretrained``.

Checkpoints written by transformers before the vision attention's ``q_bias``/``v_bias`` were
folded into ``qkv.bias`` are read too (the bias becomes (q, zeros, v), exactly as then computed).

Writing: ``Blip2ForConditionalGeneration`` finds the image in the prompt through exactly
``num_query_tokens`` copies of ``config.image_token_index`` and silently ignores the image when
they are missing, so every folder vltool writes has ``<image>`` in its tokenizer, that id in its
config and a ``Blip2Processor`` that inserts the copies (``ensure_image_token``,
``assemble_blip2``, ``save_blip2_folder``). This module sits below ``vltool.models`` and uses
transformers only, so ``vltool convert`` and the model code share one implementation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.errors import UserError
from vltool.sources.weight_files import load_or_explain

IMAGE_TOKEN = "<image>"


@dataclass
class Blip2Parts:
    """A BLIP-2 model taken apart. ``language_model`` is None unless asked for."""

    vision_model: nn.Module  # Blip2VisionModel; its post_layernorm is LAVIS's ln_vision
    qformer: nn.Module  # Blip2QFormerModel
    query_tokens: torch.Tensor  # [1, Q, d_qformer]
    projector: nn.Linear
    tokenizer: Any
    image_processor: Any
    config: Any  # Blip2Config
    path: Path
    language_model: nn.Module | None = None
    _embeddings: torch.Tensor | None = None

    @property
    def image_token_index(self) -> int | None:
        return getattr(self.config, "image_token_index", None)

    @property
    def lm_input_embeddings(self) -> torch.Tensor:
        """[vocab, d_lm] input word embeddings of the LLM (through OPT's project_in where there is one).

        Loaded on first use through transformers (only the word converter needs them), so a
        transfer that does not fit a converter never reads the source LLM.
        """
        if self._embeddings is None:
            self._embeddings = (input_word_embeddings(self.language_model) if self.language_model is not None
                                else read_blip2_input_embeddings(self.path))
        return self._embeddings


def _weight_files(folder: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / s for s in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    raise UserError(f"{folder} has no weights (model.safetensors, pytorch_model.bin or a sharded index)")


def read_tensors(folder: Path, wanted: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    """Tensors whose names satisfy ``wanted``, read lazily from safetensors or .bin (weights_only)."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for file in _weight_files(Path(folder)):
        if not file.is_file():
            raise UserError(f"{file} is listed in the weight index but missing")
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118  (safe_open is not iterable)
                    if wanted(key):
                        out[key] = handle.get_tensor(key)
        else:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # a legacy (non-zip) .bin cannot be memory-mapped
                state = torch.load(file, map_location="cpu", weights_only=True)
            out.update({k: v for k, v in state.items() if wanted(k)})
    return out


def fold_legacy_qkv_bias(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``...self_attn.q_bias`` + ``v_bias`` (older checkpoints) -> ``...self_attn.qkv.bias``."""
    out = dict(tensors)
    for key in [k for k in tensors if k.endswith("self_attn.q_bias")]:
        stem = key[: -len("q_bias")]
        q, v = out.pop(key), out.pop(stem + "v_bias")
        out[stem + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out


def load_causal_lm(folder: Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A causal-LM folder through transformers' own ``from_pretrained`` (any shard/prefix/dtype layout).

    transformers maps every layout real repositories use (sharded ``.bin`` or safetensors,
    facebook/opt-*'s ``decoder.*`` keys without ``model.``, tied heads left out, fp16 storage), so
    vltool never looks weights up by key itself. ``dtype`` defaults to float32: the stored dtype
    (often fp16) is not what a CPU or a mixed-precision run computes in.
    """
    from transformers import AutoModelForCausalLM

    try:
        return load_or_explain(lambda: AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval(), folder)
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}: transformers cannot load this causal LM ({str(err).splitlines()[0]})") from None


def read_input_embeddings(folder: Path) -> torch.Tensor:
    """A causal-LM folder's input word embeddings (through OPT's project_in), loaded by transformers."""
    return input_word_embeddings(load_causal_lm(Path(folder)))


def read_blip2_input_embeddings(folder: Path) -> torch.Tensor:
    """The input word embeddings of a BLIP-2 folder's LLM, loaded by transformers' from_pretrained."""
    from transformers import Blip2ForConditionalGeneration

    model = Blip2ForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32)
    return input_word_embeddings(model.language_model)


def _load_module(module: nn.Module, tensors: dict[str, torch.Tensor], what: str, folder: Path,
                 dtype: torch.dtype) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise UserError(f"{folder}: the checkpoint lacks {len(missing)} {what} tensors, e.g. {missing[0]}")
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise UserError(f"{folder}: tensor {what}.{name} has shape {list(tensors[name].shape)}, the config "
                            f"expects {list(ref.shape)}")
    module.load_state_dict({k: v.to(dtype) for k, v in tensors.items() if k in expected}, assign=True)


def _sub(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _tokenizer_and_processor(folder: Path) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}: cannot load its tokenizer ({err})") from None
    try:
        processor = AutoImageProcessor.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}: cannot load its image processor (preprocessor_config.json): {err}") from None
    return tokenizer, processor


def load_blip2_parts(path: Path, *, with_language_model: bool = False,
                     dtype: torch.dtype = torch.float32) -> Blip2Parts:
    """The VPG, projector and LM input embeddings of an HF BLIP-2 folder (see module docstring)."""
    from transformers import Blip2Config, Blip2QFormerModel, Blip2VisionModel

    folder = Path(path)
    config = Blip2Config.from_pretrained(str(folder))
    if not config.use_decoder_only_language_model:
        raise UserError(f"{folder} is a BLIP-2 model on an encoder-decoder LM ({config.text_config.model_type}); "
                        f"vltool transfers from decoder-only (OPT / LLaMA) BLIP-2 models")
    tokenizer, processor = _tokenizer_and_processor(folder)
    if with_language_model:
        from transformers import Blip2ForConditionalGeneration

        model = load_or_explain(
            lambda: Blip2ForConditionalGeneration.from_pretrained(str(folder), dtype=dtype).eval(), folder)
        return Blip2Parts(model.vision_model, model.qformer, model.query_tokens.detach(), model.language_projection,
                          tokenizer, processor, config, folder, model.language_model)
    tensors = load_or_explain(lambda: read_tensors(
        folder, lambda k: k.startswith(("vision_model.", "qformer.", "language_projection.")) or k == "query_tokens"),
        folder)
    tensors = fold_legacy_qkv_bias(tensors)
    with torch.device("meta"):
        vision = Blip2VisionModel(config.vision_config)
        qformer = Blip2QFormerModel(config.qformer_config)
        projector = nn.Linear(config.qformer_config.hidden_size, config.text_config.hidden_size)
    _load_module(vision, _sub(tensors, "vision_model."), "vision_model", folder, dtype)
    _load_module(qformer, _sub(tensors, "qformer."), "qformer", folder, torch.float32)  # HF keeps it fp32
    _load_module(projector, _sub(tensors, "language_projection."), "language_projection", folder, dtype)
    if "query_tokens" not in tensors:
        raise UserError(f"{folder}: the checkpoint has no query_tokens tensor")
    return Blip2Parts(vision.eval(), qformer.eval(), tensors["query_tokens"].float(), projector,
                      tokenizer, processor, config, folder)


def input_word_embeddings(lm: nn.Module) -> torch.Tensor:
    """A causal LM's input word embeddings [vocab, hidden], through OPT's ``project_in`` if it has one."""
    weight = lm.get_input_embeddings().weight.detach().float()
    project_in = next((m for name, m in lm.named_modules() if name.endswith("project_in") and isinstance(m, nn.Linear)),
                      None)
    if project_in is not None:
        weight = weight @ project_in.weight.detach().float().T
    return weight


def ensure_image_token(tokenizer: Any, model: nn.Module) -> int:
    """THE image placeholder routine: ``<image>``'s id in ``tokenizer``, added if missing.

    ``model`` is a causal LM, or anything with a ``language_model`` (Blip2ForConditionalGeneration,
    the model every stage trains); its config's ``image_token_index`` is set too where it has one.
    The token is added as a special token (never split, never normalised), so the saved tokenizer
    has it at the id the config names. When the id falls past the LLM's embedding rows they grow,
    with the new rows set to the mean of the old ones (input and untied output embeddings alike):
    deterministic, so adding the token again to a reloaded target (merge, eval) gives exactly the
    model that trained. A spare row is used when the LM has one (OPT's embedding matrix has 50272
    rows for 50265 tokens; Salesforce's BLIP-2 put ``<image>`` at 50265 the same way), so most OPT
    models need no resize at all. Call it before training, merging or generating.
    """
    from transformers import AddedToken

    lm = model.language_model if getattr(model, "language_model", None) is not None else model
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, normalized=False, special=True)], special_tokens=True)
    index = int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    rows = lm.get_input_embeddings().num_embeddings
    if index >= rows:
        output = lm.get_output_embeddings()
        tied = output is not None and output.weight is lm.get_input_embeddings().weight
        lm.resize_token_embeddings(index + 1, mean_resizing=False)
        with torch.no_grad():  # means taken in fp32 whatever the LM is stored in (bf16 training loads)
            grown = lm.get_input_embeddings().weight
            grown[rows:] = grown[:rows].float().mean(0, keepdim=True).to(grown.dtype)
            head = lm.get_output_embeddings()
            if head is not None and not tied and head.weight is not grown:
                head.weight[rows:] = head.weight[:rows].float().mean(0, keepdim=True).to(head.weight.dtype)
                if getattr(head, "bias", None) is not None:
                    head.bias[rows:] = head.bias[:rows].float().mean().to(head.bias.dtype)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "image_token_index") and model is not lm:
        config.image_token_index = index
    return index


def check_image_token(tokenizer: Any, image_token_index: int, where: str) -> None:
    """Refuse a tokenizer whose ``<image>`` is not ``image_token_index`` (Blip2Processor would misplace the image)."""
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != image_token_index or IMAGE_TOKEN not in tokenizer.get_vocab():
        raise UserError(f"{where}: the tokenizer's {IMAGE_TOKEN} is not config.image_token_index {image_token_index}; "
                        f"transformers would silently ignore the image")


def pad_left(tokenizer: Any) -> None:
    """Save ``tokenizer`` with ``padding_side: left``: a merged folder is for generate(), and a batch of
    prompts for a decoder-only LM must end where generation starts (right padding puts pads there)."""
    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"  # what save_pretrained writes to tokenizer_config.json


def check_pad_token(tokenizer: Any, config: Any, where: str) -> None:
    """Refuse to save a tokenizer without a pad token, or with one the config does not name
    (``processor(..., padding=True)`` would raise, or pad with a token the model never saw as pad)."""
    pad = tokenizer.pad_token_id
    if pad is None or pad != getattr(config, "pad_token_id", None):
        raise UserError(f"{where}: the tokenizer's pad token id {pad} is not config.pad_token_id "
                        f"{getattr(config, 'pad_token_id', None)}; batched prompts would not pad correctly")


def assemble_blip2(vision_model: nn.Module, qformer: nn.Module, query_tokens: torch.Tensor, projector: nn.Linear,
                   language_model: nn.Module, image_token_index: int) -> Any:
    """A Blip2ForConditionalGeneration around existing modules (shared, not copied or re-initialised)."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    lm_config = language_model.config
    if projector.out_features != lm_config.hidden_size:
        raise UserError(f"Blip2ForConditionalGeneration feeds the projector's {projector.out_features} features into "
                        f"an LLM of hidden size {lm_config.hidden_size}; they must be equal")
    config = Blip2Config(vision_config=vision_model.config.to_dict(), qformer_config=qformer.config.to_dict(),
                         text_config=lm_config.to_dict(), num_query_tokens=query_tokens.shape[1],
                         image_token_index=int(image_token_index))
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    model.vision_model = vision_model
    model.qformer = qformer
    model.query_tokens = query_tokens if isinstance(query_tokens, nn.Parameter) else nn.Parameter(query_tokens)
    model.language_projection = projector
    model.language_model = language_model
    model.config.text_config = lm_config
    # generate() reads the top-level generation config: the LM's settled ids (special_tokens), not
    # whatever its config.json said (lmsys/vicuna-7b-v1.1: pad -1)
    own = getattr(language_model, "generation_config", None)
    if own is not None:
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(model.generation_config, name, getattr(own, name, None))
    return model


def save_blip2_folder(model: Any, tokenizer: Any, image_processor: Any, out_dir: Path,
                      prepend_image_tokens: bool = True) -> Path:
    """Weights + config + ``Blip2Processor`` (tokenizer with ``<image>``, image processor) in ``out_dir``.

    ``prepend_image_tokens=False`` saves the processor without ``num_query_tokens``: it then puts
    no placeholders in front of the text, for layouts (LaVIN's) whose prompt text carries them.
    """
    from transformers import Blip2Processor

    out_dir = Path(out_dir)
    check_image_token(tokenizer, model.config.image_token_index, str(out_dir))
    check_pad_token(tokenizer, model.config.text_config, str(out_dir))
    pad_left(tokenizer)
    model.save_pretrained(str(out_dir))
    queries = model.config.num_query_tokens if prepend_image_tokens else None
    Blip2Processor(image_processor=image_processor, tokenizer=tokenizer,
                   num_query_tokens=queries).save_pretrained(str(out_dir))
    return out_dir
