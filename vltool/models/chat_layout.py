"""VL-Vicuna's chat turn (VPGTrans stage 3, MiniGPT-4 style): token layout, stop rule, chat template.

The official stage (github.com/VPGTrans/VPGTrans@32e885c): ``lavis/models/blip2_models/blip2_vicuna.py``
trains on ``[BOS] "###Human: <Img>" [32 visual tokens] "</Img> {instruction} ###Assistant: "``
followed by ``caption + "###"``. ``prompt_wrap`` tokenises the text before and after the image
on their own, without special tokens; the caption + ``end_sym`` ("###") is tokenised alone,
truncated to ``max_txt_len`` (160, ``from_config``) tokens, and is the only labelled text. The
instruction is drawn at random, once per forward (``random.choice(self.prompt_list)``), from four
written into ``__init__`` (the lines of MiniGPT-4's ``prompts/alignment.txt``); the turn template
is ``'###Human: {} ###Assistant: '`` (``lavis/projects/blip2/train/vicuna_vpgtrans_step3_self_instruct.yaml``
``prompt_template``). Generation stops at "###" in either of its LLaMA spellings
(``StoppingCriteriaSub``), and the text before "###" is the answer
(``lavis/conversation/conversation.py`` ``Chat.answer``).

vltool writes that turn as ONE chat template (``chat_template``) and tokenises its rendering, so
plain transformers (``tokenizer.apply_chat_template`` of the merged folder) gives exactly the ids
vltool trains and generates with. Each separately tokenised official segment starts with
SentencePiece's dummy-prefix "▁"; in one string a space after a special token gives that "▁"
back, so the template reads ``"<s> ###Human: <Img>" + "<image>" * 32 + " </Img> {instruction}
###Assistant: "`` and its ids equal the official ones on LLaMA's tokenizer (tests/stages/test_vpg_chat.py).
Two choices of vltool: generation keeps the training prompt, trailing space included (the official
demo's ``Chat`` ends its prompt with ``"Assistant:"``), and a sample that has its own prompt uses
it as the instruction (with none, the first official instruction is used when generating).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vltool.data.text_batches import IGNORE, TextEncoder
from vltool.models import vlm

IMAGE_TOKEN = "<image>"
IMAGE_HERE = "<ImageHere>"  # the official placeholder inside the image text
# blip2_vicuna.py __init__ (and MiniGPT-4 prompts/alignment.txt), without their "<Img><ImageHere></Img> " head
INSTRUCTIONS = ("Describe this image in detail.",
                "Take a look at this image and describe what you notice.",
                "Please provide a detailed description of the picture.",
                "Could you describe the contents of this image for me?")
TURN = "###Human: {} ###Assistant: "  # step-3 yaml prompt_template
IMAGE_TEXT = "<Img><ImageHere></Img>"
END = "###"  # end_sym


def chat_parts(chat: dict[str, Any]) -> tuple[str, str, str, str]:
    """(turn head, image head, image tail, turn tail) of ``turn.format(image + " " + instruction)``."""
    head, tail = chat["template"].split("{}")
    image_head, image_tail = chat["image"].split(IMAGE_HERE)
    return head, image_head, image_tail, tail


def chat_template(chat: dict[str, Any], num_query_tokens: int) -> str:
    """The Jinja chat template of a merged chat folder: one user turn (an image and/or text)
    renders as vltool trains it; an assistant message is followed by the end mark."""
    head, image_head, image_tail, tail = chat_parts(chat)
    q = repr
    image = f"{{{{- {q(image_head)} + {q(IMAGE_TOKEN)} * {num_query_tokens} + ' ' + {q(image_tail)} -}}}}"
    return (
        "{{- bos_token -}}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        f"{{{{- ' ' + {q(head)} -}}}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        f"{{%- if part['type'] == 'image' -%}}{image}"
        "{%- else -%}{{- (' ' if not loop.first else '') + part['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        f"{{{{- {q(tail)} -}}}}"
        "{%- elif message['role'] == 'assistant' -%}"
        f"{{{{- message['content'] if message['content'] is string else message['content'][0]['text'] -}}}}"
        f"{{{{- {q(chat['end'])} -}}}}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


def user_turn(instruction: str) -> list[dict[str, Any]]:
    """The conversation of one image + instruction, as ``apply_chat_template`` takes it."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]


def stop_token_ids(tokenizer, end: str) -> list[int]:
    """Ids that spell ``end`` as ONE token (LLaMA: "###"), for a generation config that must stop
    without a tokenizer; ``stop_strings`` catches every spelling when the tokenizer is passed."""
    ids = []
    for text in (end, " " + end):
        pieces = [i for i in tokenizer(text, add_special_tokens=False)["input_ids"]
                  if tokenizer.decode([i]).strip()]
        if len(pieces) == 1 and pieces[0] not in ids and tokenizer.decode(pieces).strip() == end:
            ids.append(pieces[0])
    return ids


class ChatLayout:
    """Training and generation rows of the chat turn; the same interface as ``vlm.VLTextLayout``."""

    def __init__(self, tokenizer, num_query_tokens: int, image_token_index: int, max_answer_tokens: int,
                 chat: dict[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.encoder = TextEncoder(tokenizer, max_answer_tokens=max_answer_tokens)  # padding
        self.num_query_tokens = num_query_tokens
        self.image_token_index = image_token_index
        self.max_answer_tokens = max_answer_tokens
        self.chat = dict(chat)
        self.template = chat_template(self.chat, num_query_tokens)
        self.stop_id: int | None = None  # the end is a string ("###"): ``generate_kwargs``
        self._prompt_ids: dict[str, list[int]] = {}

    @property
    def generate_kwargs(self) -> dict[str, Any]:
        """What ``vlm.generate`` adds: stop at the end mark in any of its spellings."""
        return {"stop_strings": [self.chat["end"]], "tokenizer": self.tokenizer}

    def trim(self, text: str) -> str:
        """The answer: the text before the end mark (``Chat.answer`` splits at "###")."""
        return text.split(self.chat["end"])[0].strip()

    def prompt_ids(self, instruction: str) -> list[int]:
        """[BOS] + turn with the visual slots (``image_token_index``), from the chat template."""
        if instruction not in self._prompt_ids:
            text = self.tokenizer.apply_chat_template(user_turn(instruction), chat_template=self.template,
                                                      tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            slots = [i for i, t in enumerate(ids) if t == self.image_token_index]
            if len(slots) != self.num_query_tokens or slots[-1] - slots[0] + 1 != self.num_query_tokens:
                raise ValueError(f"the chat turn must hold {self.num_query_tokens} adjacent {IMAGE_TOKEN} tokens; "
                                 f"the instruction {instruction!r} must not contain {IMAGE_TOKEN} itself")
            self._prompt_ids[instruction] = ids
        return self._prompt_ids[instruction]

    def _answer_ids(self, answer: str) -> list[int]:
        return self.tokenizer(answer + self.chat["end"], add_special_tokens=False)["input_ids"][: self.max_answer_tokens]

    def training(self, prompts: Sequence[str], answers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Right-padded rows; one official instruction drawn per call (per micro-batch, as the
        official forward) for the rows without a prompt of their own."""
        instructions = self.chat["instructions"]
        drawn = instructions[int(torch.randint(len(instructions), ()))]
        rows, labels = [], []
        for prompt, answer in zip(prompts, answers):
            head = self.prompt_ids(prompt or drawn)
            tail = self._answer_ids(answer)
            rows.append(head + tail)
            labels.append([IGNORE] * len(head) + tail)
        pad = self.encoder.pad_id
        return {"input_ids": self.encoder.pad(rows, pad),
                "attention_mask": self.encoder.pad([[1] * len(r) for r in rows], 0),
                "labels": self.encoder.pad(labels, IGNORE)}

    def generation(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded turns; a sample without a prompt gets the first official instruction."""
        rows = [self.prompt_ids(p or self.chat["instructions"][0]) for p in prompts]
        return {"input_ids": self.encoder.pad(rows, self.encoder.pad_id, left=True),
                "attention_mask": self.encoder.pad([[1] * len(r) for r in rows], 0, left=True)}


def text_layout(tokenizer, num_query_tokens: int, image_token_index: int, recipe: dict[str, Any] | None):
    """The layout a vpg artifact's recipe trained with: the chat turn when it has ``chat``, else the
    caption layout (``vlm.VLTextLayout``: its end of text and caption prompt)."""

    recipe = recipe or {}
    if recipe.get("chat"):
        return ChatLayout(tokenizer, num_query_tokens, image_token_index, recipe.get("max_text_tokens", 160),
                          recipe["chat"])
    return vlm.VLTextLayout(tokenizer, num_query_tokens, image_token_index,
                            end_of_text=recipe.get("end_of_text"), prompt=recipe.get("prompt") or "")


def prepare_chat_folder(model, tokenizer, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """Before a chat vpg artifact is saved as a BLIP-2 folder: give its tokenizer the chat template
    (saved with it, so ``tokenizer.apply_chat_template`` of the folder renders vltool's turn), and
    make its generation config stop at the end mark where the vocabulary spells it as one token.
    Returns the manifest entries of the folder (``text_layout`` is what ``vltool eval`` / ``predict``
    rebuild the layout from), or None for a caption artifact."""
    chat = recipe.get("chat")
    if not chat:
        return None
    tokenizer.chat_template = chat_template(chat, model.config.num_query_tokens)
    # the LLM's and the tokenizer's EOS, then the end mark (not the caption layout's "\n": a detailed
    # description may hold newlines, and the official stage stops at "###" only)
    own = model.config.text_config.eos_token_id
    ids = [*(own if isinstance(own, list) else [own]), tokenizer.eos_token_id, *stop_token_ids(tokenizer, chat["end"])]
    model.generation_config.eos_token_id = list(dict.fromkeys(i for i in ids if i is not None))
    return {"layout": "vl-chat", "text_layout": {"chat": chat, "max_text_tokens": recipe.get("max_text_tokens", 160)},
            "prompt_template": "tokenizer.apply_chat_template(" + repr(user_turn("{instruction}")) + ")",
            "stop_strings": [chat["end"]]}
