"""``vltool transfer --from-vpg ART``: one more VPG fine-tuning stage from a finished vpg artifact.

VPGTrans's stage 3 (VL-Vicuna's chat tuning) is this stage with a recipe that sets ``chat``
(``recipes/vpgtrans/vicuna7b-chat.yaml``): the artifact's Q-Former, query tokens, ln_vision and
projector train again -- VPGTrans's step-3 run keeps ``only_proj: False`` and ``freeze_vit: True``
(github.com/VPGTrans/VPGTrans@32e885c ``run_scripts/blip2/scale_up_train/vicuna_vpgtrans_step3_self_instruct.sh``,
``lavis/models/blip2_models/blip2_vicuna.py``, where ``freeze_vit`` freezes the ViT only and
``only_proj`` would freeze ln_vision, Q-Former and queries) -- the parts stage 2 trains
(``vlm.STAGE2_PARTS``). MiniGPT-4's own stage 2 differs: it trains the projector alone
(github.com/Vision-CAIR/MiniGPT-4@d94738a ``minigpt4/configs/models/minigpt4_vicuna0.yaml``:
``freeze_vit``, ``freeze_qformer``) at lr 3e-5 -> 1e-5 (``train_configs/minigpt4_stage2_finetune.yaml``:
batch 12, 5 x 200 iterations, 200 warm-up steps); VPGTrans's step 3 keeps MiniGPT-4's turn, data,
160 tokens and 200 warm-up iterations, and sets 1e-5 -> 1e-6, 800 iterations of 6 per GPU. Data: MiniGPT-4's aligned
set (``cc_sbu_align:DIR``) in the chat turn (``vltool.models.chat_layout``). The ViT and the LLM
stay frozen, as in every VPGTrans stage. Without ``chat`` the recipe's caption layout is used.

Unlike ``--from-warmup``, nothing but the source and target comes from the artifact: data,
layout and schedule are the recipe's. The result is a vpg artifact like stage 2's (its
``metrics.jsonl`` continues the artifact's curve, phase ``chat``), which ``vltool merge`` turns into
a BLIP-2 folder carrying the chat template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vltool.artifacts import read_artifact
from vltool.config.schema import VPGTransRecipe
from vltool.errors import UserError
from vltool.models.chat_layout import text_layout
from vltool.stages import vpgtrans, vpgtrans_setup, warm_artifact
from vltool.stages.scaffold import StageRun
from vltool.training.progress import Reporter

PHASE = "chat"


def flags_from_vpg(path: Path) -> dict[str, Any]:
    """The source and target a vpg artifact was trained for (``--from-vpg`` needs no repeats)."""
    recipe = read_artifact(Path(path), kinds=("vpg",), verify=False).manifest.get("recipe", {})
    return {"src": recipe.get("src"), "dst": recipe.get("dst")}


def run_from_vpg(cfg: VPGTransRecipe, out: Path, from_vpg: Path, force: bool = False, resume: bool = False,
                 reporter: Reporter | None = None) -> Path:
    """Fine-tune the VPG of ``from_vpg`` on ``cfg``'s data, in its layout; write a vpg artifact."""
    if cfg.from_scratch:
        raise UserError("--from-vpg continues a trained vpg artifact; it excludes --from-scratch")
    if not cfg.data.train:
        raise UserError("--from-vpg trains on the recipe's data.train or --data (VL-Vicuna's chat stage: "
                        "--data cc_sbu_align:DIR)")
    before = warm_artifact.check_matches(cfg, Path(from_vpg))
    with StageRun(cfg, out, force, resume, reporter) as run:
        setup = vpgtrans_setup.prepare(cfg, run.reporter, "warmup", Path(from_vpg), phases=("finetune",))
        model = setup.model
        setup.layout = text_layout(setup.tokenizer, model.config.num_query_tokens, model.config.image_token_index,
                                   cfg.model_dump(mode="json"))
        if cfg.chat is not None:
            setup.metrics.pop("end_of_text_id", None)  # the caption layout's; the chat turn ends at chat.end
            run.reporter.log(f"chat turn: {cfg.chat.template!r}, {len(cfg.chat.instructions)} instructions, "
                             f"answers end with {cfg.chat.end!r}")
        offset = int(before.get("metrics", {}).get("steps_total", 0))
        rows = [json.loads(line) for line in (Path(from_vpg) / "metrics.jsonl").read_text().splitlines() if line]
        model, chat_rows, timing = vpgtrans.run_phase(setup, cfg, PHASE, run)
        rows += [{**r, "step": r["step"] + offset, "phase": PHASE} for r in chat_rows]
        evals = [r["eval"] for r in chat_rows if "eval" in r]
        metrics = {**setup.metrics, **({f"final_{k}": v for k, v in evals[-1].items()} if evals else {}),
                   f"{PHASE}_steps": timing["steps"], f"{PHASE}_step_s": timing.get("step_s"),
                   "steps_total": offset + timing["steps"], "from_vpg": str(Path(from_vpg).resolve()),
                   "data_bad_samples_skipped": timing.get("bad_samples_skipped", 0)}
        return vpgtrans.save_vpg(setup, model, cfg, run, rows, metrics)
