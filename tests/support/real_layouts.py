"""Tiny, faithful replicas of the real hub repositories vltool's headline commands read.

Each builder writes a repository with the SAME file names, formats, tensor key names, stored
dtypes and config structure as the published one, only with tiny widths (hidden 32-64, 2
layers), and publishes it into a Hugging Face cache exactly as ``huggingface_hub`` lays one out:
``models--org--name/blobs/<sha256>``, ``snapshots/<revision>/<file>`` as relative symlinks to the
blobs, ``refs/main`` holding the revision. Point ``HF_HOME`` at the cache's parent and the real
aliases (``opt2.7b``, ``vicuna7b``, ...) resolve to them.

Layouts replicated (from the repositories' published file lists and config.json files):

* Salesforce/blip2-opt-2.7b: ``model-0000{1,2}-of-00002.safetensors`` + ``model.safetensors.index.json``
  (fp32; keys ``vision_model.*``, ``qformer.*``, ``query_tokens``, ``language_projection.*``,
  ``language_model.model.decoder.*``, ``language_model.lm_head.weight``); config.json with
  ``image_token_index`` = 50265-analogue (the first id after the BPE vocab, inside OPT's spare
  embedding rows) and ``num_query_tokens``; GPT-2 BPE ``vocab.json`` / ``merges.txt`` plus
  ``tokenizer.json``, ``added_tokens.json`` (``<image>``), ``special_tokens_map.json``,
  ``tokenizer_config.json``; ``preprocessor_config.json`` (BlipImageProcessor) and
  ``processor_config.json`` (num_query_tokens).
* facebook/opt-6.7b: ``pytorch_model-0000{1,2}-of-00002.bin`` + ``pytorch_model.bin.index.json``,
  keys ``decoder.*`` WITHOUT the ``model.`` prefix (and no ``lm_head.weight``: tied), fp16;
  ``vocab.json`` / ``merges.txt``, ``tokenizer_config.json`` (GPT2Tokenizer, bos = eos = ``</s>``),
  ``special_tokens_map.json``, no ``tokenizer.json``; config ``torch_dtype: float16``, vocab padded
  past the tokenizer as OPT's 50272 rows for 50265 tokens.
* lmsys/vicuna-7b-v1.1: ``pytorch_model-0000{1,2}-of-00002.bin`` + index, keys ``model.*`` and
  ``lm_head.weight``, fp16; ``tokenizer.model`` (SentencePiece, byte fallback) ONLY: no
  ``tokenizer.json``; ``tokenizer_config.json`` (LlamaTokenizer), ``special_tokens_map.json``.
* huggyllama/llama-7b: ``model-0000{1,2}-of-00002.safetensors`` + index, fp16, same tokenizer files.
* openai/clip-vit-large-patch14: ``model.safetensors`` (CLIPModel keys ``text_model.*``,
  ``vision_model.*``, ``visual_projection.weight``, ``text_projection.weight``, ``logit_scale``),
  config.json with the legacy ``text_config_dict`` / ``vision_config_dict`` beside ``text_config`` /
  ``vision_config``; ``preprocessor_config.json`` in the old CLIPFeatureExtractor form (integer
  ``size`` and ``crop_size``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import torch

SENTENCES = [
    "a red circle on the left", "a big blue square on the right", "a small green triangle",
    "the circle is red", "what colour is the square?", "the answer is blue.", "a photo of a cat on a mat",
    "two dogs play in the park", "a man rides a horse near the river", "question: what is it? answer: a cat",
    "Image: N/A", "Image:", "describe the picture in detail.", "hello world, this is a small test sentence",
]
IMAGE_TOKEN = "<image>"
NUM_QUERY_TOKENS = 4
IMAGE_SIZE = 16


def revision(hub_id: str) -> str:
    return hashlib.sha1(hub_id.encode()).hexdigest()


def publish(staging: Path, cache: Path, hub_id: str, rev: str | None = None) -> Path:
    """Move ``staging``'s files into ``cache`` as huggingface_hub stores a downloaded snapshot.

    ``rev`` (a commit sha) publishes an older revision beside the current one: its snapshot folder
    is added and ``refs/main`` is left alone, as after ``hf download REPO --revision SHA``.
    """
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    is_main = rev is None
    rev = rev or revision(hub_id)
    snapshot = repo / "snapshots" / rev
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in staging.rglob("*") if p.is_file()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.move(str(file), blob)
        link = snapshot / file.relative_to(staging)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    if is_main:
        (repo / "refs" / "main").write_text(rev)
    shutil.rmtree(staging, ignore_errors=True)
    return snapshot


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


# ----- tokenizers ------------------------------------------------------------------------------
def gpt2_bpe_files(folder: Path) -> int:
    """OPT's tokenizer: GPT-2 byte-level BPE vocab.json + merges.txt with <s> <pad> </s> <unk> at 0-3."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 3, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    _json(folder / "special_tokens_map.json", {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>",
                                               "pad_token": "<pad>"})
    _json(folder / "tokenizer_config.json", {
        "add_bos_token": True, "add_prefix_space": False, "bos_token": "</s>", "eos_token": "</s>",
        "errors": "replace", "model_max_length": 1000000000000000019884624838656, "pad_token": "<pad>",
        "special_tokens_map_file": None, "tokenizer_class": "GPT2Tokenizer", "unk_token": "</s>"})
    return bpe.get_vocab_size()


def sentencepiece_files(folder: Path) -> int:
    """LLaMA's tokenizer.model (BPE SentencePiece, byte fallback, <unk>=0 <s>=1 </s>=2) and its configs."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 3), model_writer=model, vocab_size=300, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True, hard_vocab_limit=False,
        minloglevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    size = spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
    _json(folder / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    _json(folder / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": True,
                      "rstrip": False, "single_word": False},
        "clean_up_tokenization_spaces": False,
        "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": True,
                      "rstrip": False, "single_word": False},
        "model_max_length": 2048, "pad_token": None, "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
        "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": False, "normalized": True,
                      "rstrip": False, "single_word": False}})
    return size


# ----- weights ---------------------------------------------------------------------------------
def _shard_names(n: int, stem: str, suffix: str) -> list[str]:
    return [f"{stem}-{i + 1:05d}-of-{n:05d}.{suffix}" for i in range(n)]


def write_shards(folder: Path, state: dict[str, torch.Tensor], fmt: str, shards: int = 2) -> None:
    """``state`` in ``shards`` files + the index huggingface writes (safetensors or pickled .bin)."""
    from safetensors.torch import save_file

    keys = list(state)
    per = -(-len(keys) // shards)
    groups = [keys[i * per:(i + 1) * per] for i in range(shards)]
    names = _shard_names(shards, "model" if fmt == "safetensors" else "pytorch_model", fmt)
    weight_map, total = {}, 0
    for name, group in zip(names, groups):
        part = {k: state[k].contiguous().clone() for k in group}
        if fmt == "safetensors":
            save_file(part, str(folder / name), metadata={"format": "pt"})
        else:
            torch.save(part, folder / name)
        weight_map.update({k: name for k in group})
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    _json(folder / index, {"metadata": {"total_size": total}, "weight_map": weight_map})


def _generation_config(folder: Path, bos: int, eos: int, pad: int | None) -> None:
    _json(folder / "generation_config.json", {"_from_model_config": True, "bos_token_id": bos,
                                              "eos_token_id": eos, **({"pad_token_id": pad} if pad is not None else {}),
                                              "transformers_version": "4.27.0.dev0"})


def opt_config(vocab: int, hidden: int = 32) -> dict:
    """facebook/opt-*'s config.json structure, tiny: bos 2, eos 2, pad 1, prefix "</s>", torch_dtype
    float16, 50272 embedding rows for 50265 tokens (facebook/opt-6.7b's config as printed in a public
    script of the search tool's code corpus, find_string '"_name_or_path": "facebook/opt-6.7b"')."""
    return {"_name_or_path": "facebook/opt-6.7b", "_remove_final_layer_norm": False, "activation_dropout": 0.0,
            "activation_function": "relu", "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0,
            "bos_token_id": 2, "do_layer_norm_before": True, "dropout": 0.1, "eos_token_id": 2,
            "ffn_dim": hidden * 4, "hidden_size": hidden, "init_std": 0.02, "layerdrop": 0.0,
            "max_position_embeddings": 64, "model_type": "opt", "num_attention_heads": 4, "num_hidden_layers": 2,
            "pad_token_id": 1, "prefix": "</s>", "torch_dtype": "float16", "transformers_version": "4.21.0.dev0",
            "use_cache": True, "vocab_size": vocab, "word_embed_proj_dim": hidden}


def llama_config(vocab: int, hidden: int = 32, ids: tuple[int, int, int] = (1, 2, 0)) -> dict:
    """huggyllama/llama-7b's and lmsys/vicuna-7b-v1.1's config.json structure, tiny; ``ids`` = (bos, eos, pad)."""
    bos, eos, pad = ids
    return {"architectures": ["LlamaForCausalLM"], "bos_token_id": bos, "eos_token_id": eos, "hidden_act": "silu",
            "hidden_size": hidden, "intermediate_size": hidden * 2 + 8, "initializer_range": 0.02,
            "max_position_embeddings": 64, "max_sequence_length": 64, "model_type": "llama",
            "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": pad, "rms_norm_eps": 1e-06,
            "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.28.0.dev0",
            "use_cache": True, "vocab_size": vocab}


# lmsys/vicuna-7b-v1.1 as published: config.json says bos 0, eos 1, pad -1 while its tokenizer has
# <unk>=0 <s>=1 </s>=2 and its generation_config.json says bos 1, eos 2, pad 0
# (https://github.com/salesforce/LAVIS/issues/509; config ids also in
# https://github.com/Vision-CAIR/MiniGPT-4/issues/339; pad -1 reaching generate:
# https://github.com/zd11024/NaviLLM/issues/7).
VICUNA_CONFIG_IDS = (0, 1, -1)
VICUNA_GENERATION_IDS = (1, 2, 0)


def _seeded(seed: int):
    torch.manual_seed(seed)


def build_opt(cache: Path, hub_id: str = "facebook/opt-6.7b", hidden: int = 48, seed: int = 1) -> Path:
    """A facebook/opt-* repository: fp16 ``decoder.*`` keys in sharded pytorch_model-*.bin."""
    from transformers import OPTConfig, OPTForCausalLM

    staging = cache / ".staging" / hub_id
    tokens = gpt2_bpe_files(staging)
    vocab = tokens + (-tokens % 8) + 8  # spare rows, as OPT's 50272 for 50265 tokens
    config = {**opt_config(vocab, hidden), "_name_or_path": hub_id}
    _seeded(seed)
    lm = OPTForCausalLM(OPTConfig(**config))
    state = {k.removeprefix("model."): v.half() for k, v in lm.state_dict().items() if k != "lm_head.weight"}
    write_shards(staging, state, "bin")
    _json(staging / "config.json", config)
    _generation_config(staging, 2, 2, 1)
    return publish(staging, cache, hub_id)


def build_llama(cache: Path, hub_id: str, fmt: str, hidden: int = 32, seed: int = 2,
                config_ids: tuple[int, int, int] = (1, 2, 0),
                generation_ids: tuple[int, int, int] = (1, 2, 0)) -> Path:
    """A huggyllama/llama-7b (``fmt='safetensors'``) or lmsys/vicuna-7b-v1.1 (``'bin'``) repository."""
    from transformers import LlamaConfig, LlamaForCausalLM

    staging = cache / ".staging" / hub_id
    vocab = sentencepiece_files(staging)
    config = llama_config(vocab, hidden, config_ids)
    _seeded(seed)
    # the weights do not depend on the ids; build from valid ones (today's transformers refuses pad -1)
    lm = LlamaForCausalLM(LlamaConfig(**llama_config(vocab, hidden)))
    write_shards(staging, {k: v.half() for k, v in lm.state_dict().items()}, fmt)
    _json(staging / "config.json", config)
    _generation_config(staging, *generation_ids)
    return publish(staging, cache, hub_id)


def _blip2_model(text: dict, image_index: int | None, seed: int):
    """A tiny Blip2ForConditionalGeneration (ViT q/v biases non-zero, as a trained EVA ViT's)."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    config = Blip2Config(vision_config=BLIP2_VISION, qformer_config=BLIP2_QFORMER, text_config=text,
                         num_query_tokens=NUM_QUERY_TOKENS,
                         **({"image_token_index": image_index} if image_index is not None else {}))
    _seeded(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for layer in model.vision_model.encoder.layers:
            layer.self_attn.qkv.bias.normal_(0, 0.02)
    state = model.state_dict()
    state.pop("language_model.lm_head.weight", None)  # tied to the input embeddings in the checkpoint too
    return state


BLIP2_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "image_size": IMAGE_SIZE, "patch_size": 4, "qkv_bias": True}
BLIP2_QFORMER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "encoder_hidden_size": 32, "cross_attention_frequency": 1, "vocab_size": 64,
                 "max_position_embeddings": 32}


def _blip2_tokenizer(staging: Path, with_image_token: bool) -> tuple[int, int, int | None]:
    """OPT's BPE files (+ ``<image>``): (BPE tokens, the "\\n" id, ``<image>``'s id or None)."""
    from tokenizers import AddedToken
    from transformers import GPT2TokenizerFast

    tokens = gpt2_bpe_files(staging)
    tokenizer = GPT2TokenizerFast.from_pretrained(str(staging))
    image_index = None
    if with_image_token:
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, normalized=False, special=True)], special_tokens=True)
        image_index = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        assert image_index == tokens
        _json(staging / "added_tokens.json", {IMAGE_TOKEN: image_index})
    newline = tokenizer.convert_tokens_to_ids("\u010a")  # byte-level BPE's "\n" (OPT's 50118)
    tokenizer.save_pretrained(str(staging))  # tokenizer.json, tokenizer_config.json as the hub files have them
    tok_config = json.loads((staging / "tokenizer_config.json").read_text())
    for key in ("backend", "is_local", "local_files_only"):
        tok_config.pop(key, None)
    _json(staging / "tokenizer_config.json", {**tok_config, "add_bos_token": True, "processor_class": "Blip2Processor"})
    return tokens, newline, image_index


def build_blip2_opt(cache: Path, hub_id: str = "Salesforce/blip2-opt-2.7b", hidden: int = 32, seed: int = 3,
                    text_name: str = "facebook/opt-2.7b") -> Path:
    """A Salesforce/blip2-opt-* repository as the hub has it since its Nov/Dec 2024 update.

    config.json is written as the published file is (saved by transformers 4.47.0.dev0, only
    non-default keys in the sub-configs): ``image_token_index`` 50265-analogue, ``num_query_tokens``,
    a ``text_config`` with ``eos_token_id`` 50118 (the "\\n" token), ``torch_dtype`` float16 and the
    embedding rows grown past OPT's 50272 (50304 on the hub); the top-level ``torch_dtype`` float32
    (Salesforce/blip2-opt-2.7b config.json as quoted in a public notes file of the search tool's code
    corpus, find_string '"image_token_index": 50265'; the update of the hub configs and weights:
    https://github.com/huggingface/transformers/pull/34876). Weights: ``model-0000{1,2}-of-00002
    .safetensors`` + index (fp32; the repository's model.safetensors.index.json is linked in
    https://github.com/microsoft/OmniParser/issues/30); tokenizer with ``<image>`` in
    ``added_tokens.json``; ``processor_config.json`` with ``num_query_tokens`` (the 4.47 processor
    attributes, https://github.com/huggingface/transformers/issues/34109). blip2-opt-6.7b is assumed
    laid out the same way (PR 34876 updated the BLIP-2 hub repositories; its own files were not found).
    """
    from transformers import BlipImageProcessor

    staging = cache / ".staging" / hub_id
    tokens, newline, image_index = _blip2_tokenizer(staging, with_image_token=True)
    old_rows = tokens + (-tokens % 8) + 8  # OPT's 50272 rows for 50265 tokens
    rows = old_rows + 32  # the update grew them (50304)
    text = {**opt_config(rows, hidden), "_name_or_path": text_name, "eos_token_id": newline}
    write_shards(staging, _blip2_model(text, image_index, seed), "safetensors")
    _json(staging / "config.json", {
        "architectures": ["Blip2ForConditionalGeneration"], "image_text_hidden_size": 256,
        "image_token_index": image_index, "initializer_factor": 1.0, "initializer_range": 0.02,
        "model_type": "blip-2", "num_query_tokens": NUM_QUERY_TOKENS,
        "qformer_config": {**BLIP2_QFORMER, "classifier_dropout": None, "model_type": "blip_2_qformer"},
        "text_config": {"_name_or_path": text_name, "activation_dropout": 0.0, "architectures": ["OPTForCausalLM"],
                        "eos_token_id": newline, "ffn_dim": hidden * 4, "hidden_size": hidden, "model_type": "opt",
                        "num_attention_heads": 4, "num_hidden_layers": 2, "prefix": "</s>", "torch_dtype": "float16",
                        "vocab_size": rows, "word_embed_proj_dim": hidden, "max_position_embeddings": 64},
        "torch_dtype": "float32", "transformers_version": "4.47.0.dev0", "use_decoder_only_language_model": True,
        "vision_config": {**BLIP2_VISION, "dropout": 0.0, "initializer_factor": 1.0,
                          "model_type": "blip_2_vision_model", "num_channels": 3, "projection_dim": 512}})
    # transformers-4.x style processor files: preprocessor_config.json + a processor_config.json
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    _json(staging / "preprocessor_config.json", {**image_processor.to_dict(), "processor_class": "Blip2Processor"})
    _json(staging / "processor_config.json", {"num_query_tokens": NUM_QUERY_TOKENS, "processor_class": "Blip2Processor"})
    _generation_config(staging, 2, newline, 1)
    return publish(staging, cache, hub_id)


OLD_BLIP2_REVISION = "0" * 8 + hashlib.sha1(b"blip2-opt-2.7b before the Dec 2024 update").hexdigest()[8:]


def build_blip2_opt_old(cache: Path, hub_id: str = "Salesforce/blip2-opt-2.7b", hidden: int = 32,
                        seed: int = 3) -> Path:
    """The same repository at a revision from before the Nov/Dec 2024 hub update, beside ``refs/main``.

    What that update added is absent: no ``<image>`` token (no ``added_tokens.json``), no
    ``image_token_index`` and no ``processor_config.json`` (the attributes a pre-4.47 snapshot lacks,
    https://github.com/huggingface/transformers/issues/34109), OPT's own 50272-row embeddings (the
    update grew them to 50304, PR 34876), and weights as sharded ``pytorch_model-*.bin`` only (as
    issue #20 reports them; no public copy of that file list was found to confirm it). The 4.47-era
    processor attribute ``num_query_tokens`` in ``processor_config.json`` came with the update
    (https://github.com/candle-org/MindAct/issues/1905, Jan 2025: "one month ago").
    Reach it as ``Salesforce/blip2-opt-2.7b@OLD_BLIP2_REVISION``.
    """
    from transformers import BlipImageProcessor

    staging = cache / ".staging" / (hub_id + "@old")
    tokens, newline, _ = _blip2_tokenizer(staging, with_image_token=False)
    rows = tokens + (-tokens % 8) + 8  # 50272 rows for 50265 tokens
    text = {**opt_config(rows, hidden), "_name_or_path": "facebook/opt-2.7b", "eos_token_id": newline}
    write_shards(staging, _blip2_model(text, None, seed), "bin")
    _json(staging / "config.json", {
        "architectures": ["Blip2ForConditionalGeneration"], "initializer_factor": 1.0, "initializer_range": 0.02,
        "model_type": "blip-2", "num_query_tokens": NUM_QUERY_TOKENS,
        "qformer_config": {**BLIP2_QFORMER, "model_type": "blip_2_qformer"},
        "text_config": {"_name_or_path": "facebook/opt-2.7b", "architectures": ["OPTForCausalLM"],
                        "eos_token_id": newline, "ffn_dim": hidden * 4, "hidden_size": hidden, "model_type": "opt",
                        "num_attention_heads": 4, "num_hidden_layers": 2, "prefix": "</s>", "torch_dtype": "float16",
                        "vocab_size": rows, "word_embed_proj_dim": hidden, "max_position_embeddings": 64},
        "torch_dtype": "float32", "transformers_version": "4.27.0.dev0", "use_decoder_only_language_model": True,
        "vision_config": {**BLIP2_VISION, "model_type": "blip_2_vision_model"}})
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    _json(staging / "preprocessor_config.json", {**image_processor.to_dict(), "processor_class": "Blip2Processor"})
    return publish(staging, cache, hub_id, rev=OLD_BLIP2_REVISION)


def build_clip(cache: Path, hub_id: str = "openai/clip-vit-large-patch14", seed: int = 4) -> Path:
    """openai/clip-vit-large-patch14: CLIPModel weights, legacy *_config_dict config, old preprocessor keys."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    staging = cache / ".staging" / hub_id
    gpt2_bpe_files(staging)  # CLIP's own BPE files are of the same kind (vocab.json + merges.txt)
    text_dict = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                 "projection_dim": 16, "vocab_size": 300, "max_position_embeddings": 16}
    vision_dict = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 4,
                   "patch_size": 4, "image_size": IMAGE_SIZE, "projection_dim": 16}
    config = CLIPConfig(text_config=text_dict, vision_config=vision_dict, projection_dim=16)
    _seeded(seed)
    model = CLIPModel(config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging / "model.safetensors"),
              metadata={"format": "pt"})
    full = config.to_dict()
    _json(staging / "config.json", {
        "_name_or_path": "clip-vit-large-patch14/", "architectures": ["CLIPModel"], "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592, "model_type": "clip", "projection_dim": 16,
        "text_config": full["text_config"],
        "text_config_dict": text_dict, "torch_dtype": "float32", "transformers_version": None,
        "vision_config": full["vision_config"],
        "vision_config_dict": vision_dict})
    _json(staging / "preprocessor_config.json", {
        "crop_size": IMAGE_SIZE, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": IMAGE_SIZE})
    return publish(staging, cache, hub_id)


REPOS = {
    "Salesforce/blip2-opt-2.7b": build_blip2_opt,
    "Salesforce/blip2-opt-2.7b@old": build_blip2_opt_old,
    # the source of the shipped opt6.7b-to-vicuna7b / -llama7b recipes
    "Salesforce/blip2-opt-6.7b": lambda cache: build_blip2_opt(cache, "Salesforce/blip2-opt-6.7b", hidden=40,
                                                               seed=5, text_name="facebook/opt-6.7b"),
    "facebook/opt-6.7b": build_opt,
    # the target of the shipped opt2.7b-to-opt6.7b reverse direction and of --dst opt2.7b; laid out as
    # facebook/opt-6.7b (config values as opt_config cites; its shard list was not confirmed publicly)
    "facebook/opt-2.7b": lambda cache: build_opt(cache, "facebook/opt-2.7b", hidden=32, seed=6),
    "lmsys/vicuna-7b-v1.1": lambda cache: build_llama(cache, "lmsys/vicuna-7b-v1.1", "bin",
                                                      config_ids=VICUNA_CONFIG_IDS,
                                                      generation_ids=VICUNA_GENERATION_IDS),
    "huggyllama/llama-7b": lambda cache: build_llama(cache, "huggyllama/llama-7b", "safetensors"),
    "openai/clip-vit-large-patch14": build_clip,
}


def build_hub_cache(hf_home: Path, only: list[str] | None = None) -> dict[str, Path]:
    """Every replica (or ``only`` some) in ``hf_home/hub``; returns hub id -> snapshot folder."""
    cache = Path(hf_home) / "hub"
    out = {hub_id: build(cache) for hub_id, build in REPOS.items() if only is None or hub_id in only}
    shutil.rmtree(cache / ".staging", ignore_errors=True)
    return out


def offline_hub(home: Path, monkeypatch) -> Path:
    """Point huggingface_hub at the replica cache ``home``, offline, for one test."""
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home
