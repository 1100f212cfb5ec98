"""The demo report's plain-language verdict: what this run shows of each paper's claim, and what not.

Written from the measured numbers of the run (never fixed text), so a run where a claim does not
hold says so. Thresholds are deliberately simple: a speed-up counts when the transfer arm
reaches the from-scratch arm's best caption attribute accuracy at all and at least 1.5x sooner;
a routing advantage counts when the router beats one shared adapter by at least 5 points of
text-only exact match.
"""

from __future__ import annotations

from typing import Any


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}%"


def _loss_note(v: dict[str, Any]) -> str:
    """The same comparison on validation loss, which also scores wording the image does not determine."""
    ratio = v.get("speedup_val_loss")
    if ratio is not None:
        return f" On validation loss the ratio is {ratio:.2f}x."
    best_t, best_s = v.get("best_transfer_val_loss"), v.get("best_scratch_val_loss")
    if best_t is None or best_s is None:
        return ""
    return (f" On validation loss, which also scores how a caption is worded (templates and synonyms the image "
            f"does not determine), the transferred VPG never reached the from-scratch arm's best ({best_t:.4g} vs "
            f"{best_s:.4g}).")


def _vpgtrans(v: dict[str, Any]) -> list[str]:
    ratio = v.get("speedup")
    if ratio is None:
        return ["- **Not shown: VPGTrans speed-up.** The transferred VPG never reached the from-scratch arm's best "
                "caption attribute accuracy in this run." + _loss_note(v)]
    if ratio < 1.5:
        return [f"- **Not shown: a clear VPGTrans speed-up** ({ratio:.2f}x on caption attribute accuracy). The "
                f"paper reports 3-10x for small OPT pairs and 10.7x for OPT-2.7B -> 6.7B." + _loss_note(v)]
    return [f"- **Shown: VPGTrans speed-up.** The transferred VPG (warm-up + fine-tune) reached the from-scratch "
            f"arm's best caption attribute accuracy in {v['steps_transfer']} steps instead of {v['steps_scratch']} "
            f"({ratio:.2f}x). The paper reports 3-10x for small OPT pairs and 10.7x for OPT-2.7B -> 6.7B on COCO "
            f"CIDEr; this miniature does not tell how the ratio grows with scale." + _loss_note(v)]


def _mma(mm: dict[str, Any]) -> list[str]:
    before, after = mm.get("sqa_accuracy_before"), mm.get("sqa_accuracy_after")
    lines = [f"- **Shown: parameter-efficient adaptation.** tune-mma trained {mm['trainable_params']:,} of "
             f"{mm['total_params']:,} parameters ({mm['trainable_share_pct']:.2f}%) and moved ScienceQA-style "
             f"accuracy from {_pct(before)} to {_pct(after)}. LaVIN-7B trains 3.78M parameters (0.05%) and reaches "
             f"89.41% on ScienceQA; the demo's adapters are a larger share because its LLM is tiny."]
    text_before = mm.get("text_exact_match_before")
    router, shared = mm.get("text_exact_match_after_router"), mm.get("text_exact_match_after_shared_adapter")
    if None in (router, shared, text_before):
        return lines
    if router < text_before:
        lines.append(f"- **Not shown: text-only ability kept.** Text-only exact match fell from {_pct(text_before)} "
                     f"to {_pct(router)} with the router.")
    elif router - shared >= 5:
        lines.append(f"- **Shown: routing helps text-only samples.** Text-only exact match {_pct(text_before)} "
                     f"before, {_pct(router)} with the router vs {_pct(shared)} with one shared adapter.")
    else:
        lines.append(f"- **Shown: text-only ability kept; not shown: an advantage of routing.** Text-only exact "
                     f"match went from {_pct(text_before)} to {_pct(router)} with the router, and to {_pct(shared)} "
                     f"with one shared adapter: mixed training alone keeps it here, because the demo world's "
                     f"text-only and image tasks hardly conflict. LaVIN's ablation, not this miniature, is the "
                     f"evidence for routing.")
    return lines


def _forgetting(evals: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    caption = evals.get("demo:caption", {})
    base, tuned = caption.get("transfer", {}).get("CIDEr"), caption.get("mma", {}).get("CIDEr")
    if base is None or tuned is None or tuned >= 0.8 * base:
        return []
    return [f"- **Noticed: captioning is not in the MMA training mix.** After tune-mma on ScienceQA-style and "
            f"text-only data, caption CIDEr fell from {base:.3g} to {tuned:.3g}: the adapters were never trained to "
            f"caption. Add caption data to the mix to keep that skill."]


def findings(report: dict[str, Any]) -> list[str]:
    """Markdown lines for the report's "What this run shows, and what it cannot" section."""
    merge = report["merge"]["max_logit_diff"]
    lines = ["## What this run shows, and what it cannot", ""]
    lines += _vpgtrans(report["vpgtrans"])
    lines += _mma(report["mma"])
    lines.append(f"- **{'Shown' if merge <= 1e-4 else 'Not shown'}: exact re-parameterisation.** The merged "
                 f"folders reproduce the unmerged models' logits within {merge:.1e} (fp32).")
    lines += _forgetting(report.get("eval", {}))
    lines += ["- **Cannot show:** real-scale numbers (COCO CIDEr, VQAv2, ScienceQA accuracy, GPU hours). They "
              "need the real checkpoints and GPUs; `vltool transfer --dry-run` and `tune-mma --dry-run` print the "
              "real-scale parameter and memory tables, and `bench/` has the GPU measurements.", ""]
    return lines
