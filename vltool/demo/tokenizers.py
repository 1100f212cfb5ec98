"""The demo world's two tokenizers, trained with the ``tokenizers`` library.

The OPT family (demo-opt-s, demo-opt-l) shares a word-level tokenizer; demo-llama gets a small
BPE that splits many words into pieces, so transferring to it is a cross-tokenizer transfer
(the OPT -> Vicuna analogue) and the word converter must align tokens through words.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]


def _wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    """An HF tokenizer that, like OPT's and LLaMA's, puts BOS first when asked for special tokens.

    Without it ``Blip2Processor`` builds ``<image>*Q`` + text with no BOS, while training used
    ``<image>*Q <s> text``: the saved BLIP-2 folder would caption worse under plain transformers.
    """
    bos = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                        special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=["<image>"],
    )


def train_word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """Word-level vocabulary of every word in the world's text (the OPT family's)."""
    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                  pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    core.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1))
    return _wrap(core)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A small byte-level BPE (the LLaMA stand-in): a different segmentation of the same words."""
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                  show_progress=False)
    core.train_from_iterator(list(texts), trainer)
    return _wrap(core)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    tokenizer.save_pretrained(str(path))
