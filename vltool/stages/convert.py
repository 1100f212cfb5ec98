"""``vltool convert``: a LAVIS BLIP-2 ``.pth`` (+ its LLM) -> a standalone HF BLIP-2 ``model`` artifact.

Stage-2 checkpoints (with a projector) need ``--dst`` and give a ``Blip2ForConditionalGeneration``
folder; a stage-1 checkpoint (``blip2_pretrained.pth``) takes no ``--dst`` and gives a
``Blip2ForImageTextRetrieval`` folder (the manifest's ``format`` says which).

The conversion itself lives in ``sources.convert`` (it is a model source, reused by tests and by
anyone scripting vltool); this stage adds what every stage output has: the folder is written to a
temporary sibling and renamed when complete, refuses to replace an existing one without
``--force``, and carries a manifest with the checkpoint's fingerprint and what was mapped.
"""

from __future__ import annotations

from pathlib import Path

from vltool.artifacts import ArtifactWriter, ensure_writable
from vltool.artifacts.fingerprint import fingerprint_path
from vltool.errors import UserError
from vltool.sources.convert import convert_lavis
from vltool.training.progress import NullReporter, Reporter


def run(checkpoint: Path, llm: str | None, out: Path, *, vision_config: Path | None = None,
        qformer_config: Path | None = None, vision: Path | None = None, force: bool = False,
        reporter: Reporter | None = None) -> Path:

    reporter = reporter or NullReporter()
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"LAVIS checkpoint {checkpoint} does not exist (expected a BLIP-2 .pth file)")
    for flag, path in (("--vision", vision), ("--vision-config", vision_config), ("--qformer-config", qformer_config)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{flag} {path} does not exist")
    ensure_writable(Path(out), force)
    reporter.log(f"converting {checkpoint}" + (f" with LLM {llm}" if llm else ""))
    with ArtifactWriter(Path(out), "model", force=force) as writer:
        report = convert_lavis(checkpoint, llm, writer.path, vision_config=vision_config,
                               qformer_config=qformer_config, vit=vision)
        writer.add_input("checkpoint", str(checkpoint.resolve()), fingerprint_path(checkpoint), what="LAVIS .pth")
        if vision is not None:  # "vision", as vpg and adapters artifacts name it (before #24: "vit")
            writer.add_input("vision", str(Path(vision).resolve()), fingerprint_path(Path(vision)),
                             what="EVA ViT .pth")
        if report.get("llm"):
            writer.add_input("llm", report["llm"], fingerprint_path(Path(report["llm"])), what="causal LM")
        writer.manifest.update({"format": report.get("format", "Blip2ForConditionalGeneration"),
                                "conversion": report})
        writer.manifest["metrics"] = {"tensors_mapped": report["tensors_mapped"],
                                      "tensors_skipped": sum(report["tensors_skipped"].values())
                                      if isinstance(report["tensors_skipped"], dict)
                                      else len(report["tensors_skipped"])}
    skipped = report["tensors_skipped"]
    what = (f"projector {report['projector']}" if report.get("projector") else
            f"stage-1 Q-Former -> {report.get('format')}")
    reporter.log(f"mapped {report['tensors_mapped']} tensors ({what}, "
                 f"{report['num_query_tokens']} query tokens); skipped: {skipped or 'none'}")
    return Path(out)
