"""Host memory of loading a frozen target LLM: read as fp32 then cast (before) vs read in the training dtype (after).

A random LLaMA-shaped checkpoint of about 1B parameters is written once as fp16 safetensors shards
(as the hub stores 7B targets), then each variant loads it in a fresh subprocess through
``vltool.sources.open_model.open_target``, the function transfer / tune-mma call:

* ``before``: ``dtype=float32`` (what every stage read before #20), then
  ``models.memory.cast_frozen_towers(..., bfloat16)`` (what the training loop did next for a bf16 run);
* ``after``: ``dtype=bfloat16`` straight from the files (``train.frozen_dtype`` resolved before the
  load; 1-D tensors kept fp32), nothing left to cast.

Printed per variant: the process's resident memory just before the load, its peak during the load
(Linux ``VmHWM``), the peak of its anonymous memory (``RssAnon``, sampled every 2 ms: memory that
is the process's own, not page cache of the weight files), the bytes of the loaded parameters,
and each peak (minus the pre-load resident memory) divided by the stored size on disk.

    python bench/load_memory.py [--hidden 2048 --layers 16 --vocab 32000 --dir /tmp/vltool-load-bench]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import torch


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def llama_config(args) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": args.hidden,
            "intermediate_size": args.intermediate or int(args.hidden * 2.6875), "num_hidden_layers": args.layers,
            "num_attention_heads": args.hidden // 128, "num_key_value_heads": args.hidden // 128,
            "vocab_size": args.vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
            "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False, "torch_dtype": "float16"}


def write_checkpoint(folder: Path, args) -> int:
    """Random fp16 weights in two safetensors shards + index, config and a small tokenizer; returns bytes."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    config = llama_config(args)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(LlamaConfig(**config)).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    names = list(shapes)
    half = len(names) // 2
    weight_map, total = {}, 0
    for i, group in enumerate((names[:half], names[half:]), start=1):
        shard = f"model-{i:05d}-of-00002.safetensors"
        tensors = {k: (torch.randn(shapes[k], generator=generator) * 0.02).half() for k in group}
        save_file(tensors, str(folder / shard), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({k: shard for k in group})
        del tensors
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                      "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(100)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(str(folder))
    return total


def child(args) -> None:
    from vltool.models.memory import cast_frozen_towers
    from vltool.sources.open_model import open_target

    torch.set_num_threads(args.threads)
    peak_anon = [status_mb("RssAnon")]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_anon[0] = max(peak_anon[0], status_mb("RssAnon"))
            time.sleep(0.002)

    before = status_mb("VmRSS")
    before_anon = status_mb("RssAnon")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    started = time.perf_counter()
    if args.child == "before":
        lm = open_target(str(args.dir), dtype=torch.float32).model
        lm.requires_grad_(False)  # frozen, as the training loop has it when it casts
        cast_frozen_towers(lm, torch.bfloat16)
    else:
        lm = open_target(str(args.dir), dtype=torch.bfloat16).model
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in lm.parameters()})
    print(json.dumps({"rss_before_mb": before, "anon_before_mb": before_anon, "peak_rss_mb": status_mb("VmHWM"),
                      "peak_anon_mb": peak_anon[0], "seconds": seconds, "dtypes": dtypes,
                      "param_mb": sum(p.numel() * p.element_size() for p in lm.parameters()) / 2**20,
                      "params": sum(p.numel() for p in lm.parameters())}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=5504)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/vltool-load-bench"))
    ap.add_argument("--child", choices=("before", "after"))
    args = ap.parse_args()
    if args.child:
        return child(args)
    index = args.dir / "model.safetensors.index.json"
    if index.is_file() and json.loads((args.dir / "config.json").read_text()) == llama_config(args):
        stored = json.loads(index.read_text())["metadata"]["total_size"]
    else:
        stored = write_checkpoint(args.dir, args)
    stored_mb = stored / 2**20
    print(f"# python bench/load_memory.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"# {datetime.now().strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}; random LLaMA hidden {args.hidden}, "
          f"{args.layers} layers, vocab {args.vocab}: fp16 safetensors, 2 shards, {stored_mb:.0f} MiB on disk")
    rows = {}
    for variant in ("before", "after"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", variant], capture_output=True,
                             text=True, check=True)
        rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    labels = {"before": "before: read fp32, cast to bf16", "after": "after:  read bf16 (1-D fp32)  "}
    for variant, row in rows.items():
        rss = (row["peak_rss_mb"] - row["rss_before_mb"]) / stored_mb
        anon = (row["peak_anon_mb"] - row["anon_before_mb"]) / stored_mb
        print(f"{labels[variant]}: {row['params'] / 1e9:.2f}B params ({'/'.join(row['dtypes'])}, "
              f"{row['param_mb']:.0f} MiB loaded) in {row['seconds']:.1f} s; peak RSS {row['peak_rss_mb']:.0f} MiB "
              f"(+{row['peak_rss_mb'] - row['rss_before_mb']:.0f} over the {row['rss_before_mb']:.0f} before: "
              f"{rss:.2f}x the stored size), peak anonymous +{row['peak_anon_mb'] - row['anon_before_mb']:.0f} MiB "
              f"({anon:.2f}x)")
    b, a = rows["before"], rows["after"]
    rss_ratio = (b["peak_rss_mb"] - b["rss_before_mb"]) / (a["peak_rss_mb"] - a["rss_before_mb"])
    anon_ratio = (b["peak_anon_mb"] - b["anon_before_mb"]) / (a["peak_anon_mb"] - a["anon_before_mb"])
    print(f"ratio before/after: peak RSS growth {rss_ratio:.2f}x, peak anonymous growth {anon_ratio:.2f}x")

if __name__ == "__main__":
    main()
