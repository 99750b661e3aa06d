"""How far below a context-free model did make-bench runs' pretraining get (not a test)? The numbers behind
the pretrain stage's stall check, `pretrain.min_context_gain`.

For each run directory (a `make bench` seed: its params.yaml, data/pretrain_corpus.txt, models/pretrained and
metrics/pretrain.json), this holds out the same validation texts as its pretrain stage did (hold_out with its
seed and pretrain params), draws the same masks, and scores with validation_perplexity both the saved encoder
and the context-free model (unigram_log_probs: each token's add-one-smoothed share of the held-in texts'
non-special tokens). The encoder is scored in FP32, so its perplexity may differ a little from the run's
own (a bf16 run's is under autocast); both are listed.

    python -m bench.context_gain --runs bench/work/cyb/cyberbully/seed4{2,3,4} --out bench/context_gain

Writes OUT.json and OUT.md."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from transformers import AutoModelForMaskedLM, AutoTokenizer

from banglacompress.data import make_loader, read_corpus
from banglacompress.pretrain import (MaskedTexts, check_pretrain_params, hold_out, masking_for, unigram_log_probs,
                                     validation_perplexity)
from banglacompress.train import configure_torch

from .run_bench import machine


def score_run(run: Path) -> dict:
    """The run's context-free and encoder perplexities on its pretrain stage's held-out masked tokens."""
    params = yaml.safe_load((run / "params.yaml").read_text(encoding="utf-8"))
    cfg, seed = check_pretrain_params(params["pretrain"]), params["seed"]
    recorded = json.loads((run / "metrics" / "pretrain.json").read_text(encoding="utf-8"))
    train_texts, val_texts = hold_out(read_corpus(run / "data" / "pretrain_corpus.txt"), cfg["val_fraction"], seed,
                                      cfg["max_texts"])
    encoder = run / "models" / "pretrained"
    tokenizer, model = AutoTokenizer.from_pretrained(encoder), AutoModelForMaskedLM.from_pretrained(encoder)
    max_length = params["data"]["max_length"]
    masking = masking_for(cfg, tokenizer, model)
    unigram = unigram_log_probs(MaskedTexts(tokenizer, train_texts, max_length), len(tokenizer))
    loader = make_loader(MaskedTexts(tokenizer, val_texts, max_length), cfg["batch_size"], shuffle=False)
    perplexity, context_free = validation_perplexity(model, loader, masking, seed, "cpu", unigram)
    return {"run": str(run), "dataset": params["data"]["path"], "seed": seed, "epochs": cfg["epochs"],
            "mixed_precision": cfg["mixed_precision"], "texts_val": len(val_texts),
            "unigram_val_perplexity": context_free, "final_val_perplexity_fp32": perplexity,
            "final_val_perplexity_recorded": recorded["final_val_perplexity"],
            "first_epoch_val_perplexity_recorded": recorded["history"][0]["val_perplexity"],
            "context_gain": context_free / recorded["final_val_perplexity"],
            "first_epoch_context_gain": context_free / recorded["history"][0]["val_perplexity"]}


def render(result: dict) -> str:
    lines = [f"# How far below a context-free model pretraining got\n\nCommand: `{result['command']}`; "
             f"{result['machine']['cpu']}. Context-free: each token's add-one-smoothed frequency in the held-in "
             "texts, scored on the same held-out masked tokens as the encoder (the pretrain stage's stall check, "
             "`pretrain.min_context_gain`). Gain = context-free perplexity / the run's recorded perplexity.\n",
             "| run | dataset | seed | epochs | precision | context-free perplexity | after epoch 1 (gain) | "
             "final, recorded (gain) | final, FP32 here |", "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| `{r['run']}` | {Path(r['dataset']).name} | {r['seed']} | {r['epochs']} | "
                     f"{r['mixed_precision'] or 'fp32'} | {r['unigram_val_perplexity']:.1f} | "
                     f"{r['first_epoch_val_perplexity_recorded']:.1f} ({r['first_epoch_context_gain']:.2f}x) | "
                     f"{r['final_val_perplexity_recorded']:.1f} ({r['context_gain']:.2f}x) | "
                     f"{r['final_val_perplexity_fp32']:.1f} |")
    gains = [r["context_gain"] for r in result["rows"]]
    lines.append(f"\nFinal gains {min(gains):.2f}x to {max(gains):.2f}x over {len(gains)} runs.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="make-bench seed directories (<work>/<dataset>/seed<N>)")
    ap.add_argument("--out", default="bench/context_gain")
    args = ap.parse_args()
    configure_torch(2)
    rows = []
    for run in map(Path, args.runs):
        if not (run / "models" / "pretrained" / "model.safetensors").exists():
            raise SystemExit(f"error: {run} has no models/pretrained: give make-bench seed directories")
        rows.append(score_run(run))
        print(f"[context_gain] {rows[-1]}", flush=True)
    result = {"command": "python -m bench.context_gain " + " ".join(sys.argv[1:]),
              "machine": machine(), "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    Path(args.out + ".md").write_text(render(result), encoding="utf-8")
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
