"""Mixed precision on this CPU (not a test): how much faster is the pretrain stage's masked-LM loop under
bf16 autocast (`pretrain.mixed_precision: bf16`) than in FP32, per teacher shape, side by side in one process?

For each shape, one random-init masked LM is saved once, with a tokenizer trained on the whole corpus as the
pretrain stage trains it (a tokenizer trained on fewer texts cuts words into more pieces: longer sequences,
larger matrix products, and a bf16 gain the real run does not see). The pretrain stage's own function
(`pretrain_mlm`: one epoch of `--texts` corpus texts, a seeded sample, the params.yaml pretrain group otherwise)
then starts from that directory in FP32 and in bf16, alternating which goes first, `--repeats` times. Every
call sees the same weights, masks and batches, so the two differ by precision only: the held-out perplexity
after the epoch is reported beside the time as a check on bf16's numerics (one epoch says nothing about the
model a full run ends with; that needs the whole chain, bench/run_bench.py --set).
Times are wall seconds of the whole call (loading, the epoch, validation, saving); medians over the repeats.

    .venv/bin/python -m bench.bench_precision --corpus data/pretrain_corpus.txt --out bench/precision_intel
    .venv/bin/python -m bench.bench_precision --texts 300 --repeats 1 --out /tmp/bp      # smoke run

bf16 autocast is fast only where the CPU computes in bf16 (AMX or AVX512-BF16: the `flags` line of
/proc/cpuinfo, recorded in the output); elsewhere it is slower than FP32 (docs/facts.md)."""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from banglacompress.config import load_params
from banglacompress.data import read_corpus
from banglacompress.models import save_tokenizer
from banglacompress.pretrain import build_mlm, pretrain_mlm
from banglacompress.train import configure_torch, seed_everything

from .run_bench import ROOT, cpu_flags, machine

SHAPES = {"256": {"hidden": 256, "heads": 4, "ffn": 1024}, "384": {"hidden": 384, "heads": 6, "ffn": 1536}}
PRECISIONS = ("fp32", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags() -> list[str]:
    return [f for f in BF16_FLAGS if f in cpu_flags()]


def time_shape(arch: dict, corpus: list[str], texts: list[str], cfg: dict, repeats: int, max_length: int,
               seed: int) -> dict:
    """Seconds and held-out perplexity of one pretrain_mlm epoch on `texts` per precision, from one saved start
    whose tokenizer is trained on `corpus`."""
    with tempfile.TemporaryDirectory() as tmp:
        start = Path(tmp) / "start"
        seed_everything(seed)
        model, tokenizer, _ = build_mlm({"model": "scratch", "scratch": arch}, corpus, max_length)
        model.save_pretrained(start)
        save_tokenizer(tokenizer, start)
        seconds, perplexity = {p: [] for p in PRECISIONS}, {}
        for rep in range(repeats):
            for precision in PRECISIONS if rep % 2 == 0 else PRECISIONS[::-1]:
                began = time.perf_counter()
                # one epoch, timed: no stall check (a single epoch is rarely far below word frequencies)
                metrics = pretrain_mlm({**cfg, "mixed_precision": precision, "min_context_gain": None}, texts=texts,
                                       out_dir=Path(tmp) / "out", seed=seed, max_length=max_length,
                                       teacher_cfg={"model": str(start)})
                seconds[precision].append(time.perf_counter() - began)
                perplexity[precision] = metrics["final_val_perplexity"]
                print(f"[precision] {arch['hidden']} wide, {precision}: {seconds[precision][-1]:.1f}s, "
                      f"val perplexity {perplexity[precision]:.2f}", flush=True)
    median = {p: statistics.median(s) for p, s in seconds.items()}
    return {"seconds": seconds, "median_seconds": median, "fp32_over_bf16": median["fp32"] / median["bf16"],
            "val_perplexity": perplexity}


def markdown(saved: dict) -> str:
    lines = [f"# bf16 autocast against FP32 in the pretrain stage's loop ({saved['machine']['cpu']})", "",
             f"`{saved['command']}`: {saved['texts']} of the {saved['corpus_texts']} corpus texts (the tokenizer: "
             f"all of them), 1 epoch per call, {saved['repeats']} calls per precision, alternating; CPU bf16 "
             f"flags: {', '.join(saved['cpu_bf16_flags']) or 'none'}; {saved['machine']['date']}.", "",
             "| teacher width | FP32 s (median) | bf16 s (median) | FP32 / bf16 | val perplexity FP32 / bf16 |",
             "|---|---:|---:|---:|---|"]
    for name, row in saved["shapes"].items():
        m, p = row["median_seconds"], row["val_perplexity"]
        lines.append(f"| {name} | {m['fp32']:.1f} | {m['bf16']:.1f} | {row['fp32_over_bf16']:.2f}x | "
                     f"{p['fp32']:.4f} / {p['bf16']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "data" / "pretrain_corpus.txt",
                    help="the pretrain_corpus stage's output (default: this checkout's)")
    ap.add_argument("--texts", type=int, default=4000, help="corpus texts per epoch (a seeded sample)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    configure_torch(params["threads"])
    corpus = read_corpus(args.corpus)
    texts = random.Random(params["seed"]).sample(corpus, min(args.texts, len(corpus)))
    cfg = {**params["pretrain"], "epochs": 1, "max_texts": None}
    teacher = params["teacher"]["scratch"]
    max_length, seed = params["data"]["max_length"], params["seed"]
    saved = {"command": "python -m bench.bench_precision " + " ".join(sys.argv[1:]),
             "machine": machine(), "cpu_bf16_flags": cpu_bf16_flags(), "corpus_texts": len(corpus), "texts": len(texts),
             "repeats": args.repeats, "shapes": {}}
    for name in args.shapes:
        saved["shapes"][name] = time_shape({**teacher, **SHAPES[name]}, corpus, texts, cfg, args.repeats, max_length,
                                           seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(saved), encoding="utf-8")
    print(markdown(saved))


if __name__ == "__main__":
    main()
