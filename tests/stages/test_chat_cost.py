"""The dry-run of VL-Vicuna's chat stage (stage 3) counts that stage alone: no warm-up, no baseline."""

from __future__ import annotations

from vltool.config.shipped import load_named_recipe
from vltool.stages import vpgtrans


def test_chat_recipe_costs_only_its_own_stage() -> None:
    cfg = load_named_recipe("vpgtrans/vicuna7b-chat", "transfer", [], {})
    report = vpgtrans.dry_run(cfg)
    cost = report["cost"]
    assert [s["stage"] for s in cost["stages"]] == ["stage 3 (chat, --from-vpg)"]
    (chat,) = cost["stages"]
    # train.max_steps optimizer steps of train.batch_size samples (the recipe converts VPGTrans's 800
    # micro-batch iterations of 6 per GPU on 4 GPUs, accumulating 5: 800 / 5 = 160 steps of 120)
    assert (chat["steps"], chat["samples"]) == (cfg.train.max_steps, cfg.train.max_steps * cfg.train.batch_size)
    assert (chat["steps"], chat["samples"]) == (160, 19_200)
    table = next(t for t in report["tables"] if "cost" in t)
    assert [row[0] for row in table["rows"]] == ["stage 3 (chat, --from-vpg)"]  # no total, TFS or saving rows
    assert any("--from-vpg" in note and "no from-scratch counterpart" in note for note in table["notes"])
