"""The demo report's verdicts follow the measured numbers, including when a claim does not hold."""

from __future__ import annotations

from vltool.demo.findings import findings


def report(speedup, router, shared, cider_after=80.0):
    return {
        "vpgtrans": {"speedup": speedup, "steps_transfer": 100, "steps_scratch": 400, "speedup_val_loss": None,
                     "best_transfer_val_loss": 0.5524, "best_scratch_val_loss": 0.5441},
        "mma": {"trainable_params": 10, "total_params": 1000, "trainable_share_pct": 1.0,
                "sqa_accuracy_before": 40.0, "sqa_accuracy_after": 90.0, "text_exact_match_before": 60.0,
                "text_exact_match_after_router": router, "text_exact_match_after_shared_adapter": shared},
        "merge": {"max_logit_diff": 1e-6},
        "eval": {"demo:caption": {"transfer": {"CIDEr": 90.0}, "mma": {"CIDEr": cider_after}}},
    }


def test_claims_that_hold_are_marked_shown() -> None:
    shown = report(4.0, 90.0, 70.0)
    shown["vpgtrans"]["speedup_val_loss"] = 3.0
    text = "\n".join(findings(shown))
    assert "**Shown: VPGTrans speed-up.**" in text and "in 100 steps instead of 400 (4.00x" in text
    assert "On validation loss the ratio is 3.00x." in text
    assert "**Shown: routing helps text-only samples.**" in text and "Noticed" not in text


def test_claims_that_fail_are_marked_not_shown() -> None:
    text = "\n".join(findings(report(None, 50.0, 52.0, cider_after=10.0)))
    assert "**Not shown: VPGTrans speed-up.**" in text and "never reached" in text
    assert "never reached the from-scratch arm's best (0.5524 vs 0.5441)" in text
    assert "**Not shown: text-only ability kept.**" in text
    assert "caption CIDEr fell from 90 to 10" in text
    parity = "\n".join(findings(report(1.2, 90.0, 89.0)))
    assert "Not shown: a clear VPGTrans speed-up** (1.20x" in parity and "not shown: an advantage of routing" in parity
