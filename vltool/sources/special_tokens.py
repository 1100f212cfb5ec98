"""One set of special-token ids per model: the tokenizer's, checked against its configs.

Published checkpoints disagree with themselves. lmsys/vicuna-7b-v1.1's ``config.json`` says
bos 0, eos 1, pad -1, while its tokenizer has ``<unk>``=0 ``<s>``=1 ``</s>``=2 and its
``generation_config.json`` says bos 1, eos 2, pad 0 (salesforce/LAVIS#509). Copied into a saved
model, pad -1 makes transformers refuse to write the generation config, and a LLaMA tokenizer
without a pad token makes ``processor(..., padding=True)`` raise. So before a model is trained,
merged or saved, ``settle_special_tokens`` decides the ids once:

* bos / eos: the tokenizer's (what every prompt vltool encodes actually contains);
* pad: the tokenizer's pad token; else the generation config's pad id when it names a real
  token (Vicuna: 0 = ``<unk>``); else ``<unk>``; else EOS. The tokenizer gets that token as its
  pad token, so the saved tokenizer and the config agree;
* the generation config keeps its own extra stop ids (a BLIP-2 OPT stops at "\\n" too) but loses
  every id that is negative or past the vocabulary.

The model's config and generation config are written in place. Padding never changes what a
model computes (padded positions are masked), so the ids a model trained with are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SpecialIds:
    bos: int | None
    eos: int | None
    pad: int


def _valid(value: Any, size: int) -> int | None:
    """``value`` as a token id when it is an int inside ``[0, size)``, else None."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size else None


def _valid_list(value: Any, size: int) -> list[int]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in (_valid(x, size) for x in values) if v is not None]


def settle_special_tokens(lm: Any, tokenizer: Any) -> SpecialIds:
    """Make ``tokenizer``, ``lm.config`` and ``lm.generation_config`` agree on bos / eos / pad (see module doc).

    ``lm`` is a causal LM (``get_input_embeddings`` gives its rows). Returns the ids settled on.
    """
    rows = lm.get_input_embeddings().num_embeddings
    size = min(rows, len(tokenizer))
    generation = getattr(lm, "generation_config", None)
    own = {name: getattr(generation, f"{name}_token_id", None) if generation is not None else None
           for name in ("bos", "eos", "pad")}
    bos = _valid(tokenizer.bos_token_id, size)
    if bos is None:
        bos = _valid(own["bos"], size)
    eos = _valid(tokenizer.eos_token_id, size)
    extra_eos = _valid_list(own["eos"], rows)
    if eos is None and extra_eos:
        eos = extra_eos[0]
    pad = _valid(tokenizer.pad_token_id, size)
    if pad is None:
        for candidate in (_valid(own["pad"], size), _valid(tokenizer.unk_token_id, size), eos):
            if candidate is not None:
                pad = candidate
                break
        if pad is None:
            pad = 0
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)
    config = lm.config
    config.bos_token_id, config.eos_token_id, config.pad_token_id = bos, eos, pad
    if generation is not None:
        stops = ([eos] if eos is not None else []) + [e for e in extra_eos if e != eos]
        generation.bos_token_id = bos
        generation.eos_token_id = stops[0] if len(stops) == 1 else (stops or None)
        generation.pad_token_id = pad
    return SpecialIds(bos, eos, pad)
