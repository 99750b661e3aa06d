"""`make bench`: the default pipeline on real datasets, against what users would pick instead.

For each dataset it runs every stage script of the pipeline with the default params (in a scratch
copy of the project under bench/work/<dataset>, so the repo's own DVC outputs are untouched),
recording wall time and peak memory per stage. Then, on the same prepared splits:
  - the predecessor-style model: the same distilled student (KD alpha 0.7, T 4), magnitude 0.5
    (global, fine-tuned, no teacher in healing) and dynamic INT8 -- the seed settings;
  - the classical baseline: TF-IDF char 2-5-grams + logistic regression, threshold tuned on val.
Finally every artifact is scored once on test and timed in one process: the transformer models
interleaved (batch 1 p50/p95, batch-32 throughput, same threads); TF-IDF right after, same texts,
same threads (its time includes featurisation: it has no separate tokenizer).

    .venv/bin/python bench/run_bench.py                        # both datasets (~25 min on 2 cores)
    .venv/bin/python bench/run_bench.py --datasets hatespeech  # one

Writes bench/RESULTS.md and bench/RESULTS.json. Nothing is tuned on test."""
from __future__ import annotations

import argparse
import datetime
import gzip
import io
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import sklearn
import torch
import transformers
import yaml
from threadpoolctl import threadpool_limits

from banglacompress import prune, quantize
from banglacompress.baseline import fit_and_score, predict_proba
from banglacompress.data import load_split
from banglacompress.evaluate import evaluate_stages

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"
DATASETS = {
    "hatespeech": {"path": SHARED / "hatespeech_binary.csv", "text_column": "Comments",
                   "label_columns": ["HateSpeech"]},
    "cyberbully": {"path": SHARED / "cyberbully_multilabel.csv", "text_column": "comment",
                   "label_columns": ["bully", "sexual", "religious", "threat", "spam"]},
}
PIPELINE = ["prepare", "train_teacher", "distill", "prune", "quantize", "evaluate", "export"]
# The seed settings, as params on top of the default groups: every method option the default method set is
# nulled first (the stage rejects an option its method does not take, e.g. quantize.embedding_bits for dynamic).
PREDECESSOR = {"prune": {**{k: None for k in prune.OPTION_KEYS}, "method": "magnitude", "sparsity": 0.5,
                         "granularity": "global", "kd_alpha": 0.0},
               "quantize": {**{k: None for k in quantize.OPTION_KEYS}, "method": "dynamic"}}
TARGETS = {"f1_retained": 0.97, "compression": 15.0, "speedup": 4.0, "repro_minutes": 20.0}
CODE = ("stages", "banglacompress", "dvc.yaml", "params.yaml")


def make_workdir(work: Path, params: dict, share_from: Path | None = None) -> None:
    """A scratch copy of the project; `share_from` lends its prepared data and teacher/student."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for item in CODE:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if share_from is not None:
        for item in ("data/prepared", "models/teacher", "models/student"):
            shutil.copytree(share_from / item, work / item)


def run_stage(work: Path, stage: str) -> dict:
    """Run one stage script; wall seconds and the peak resident memory of its process (wait4)."""
    log = work / "logs" / f"{stage}.log"
    log.parent.mkdir(exist_ok=True)
    env = {**os.environ, "CI": "true", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, f"stages/{stage}.py"], cwd=work, env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: stage {stage} failed in {work}; see {log}:\n{log.read_text()[-2000:]}")
    print(f"[bench] {work.name}/{stage}: {seconds:.1f}s, peak {usage.ru_maxrss / 1024:.0f} MB", flush=True)
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def run_pipeline(name: str, spec: dict, base: dict) -> tuple[Path, Path, dict]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(path=str(spec["path"]), text_column=spec["text_column"],
                          label_columns=spec["label_columns"])
    work = base / name
    make_workdir(work, params)
    stages = {stage: run_stage(work, stage) for stage in PIPELINE}
    for group, overrides in PREDECESSOR.items():
        params[group].update(overrides)
    pred = base / f"{name}_predecessor"
    make_workdir(pred, params, share_from=work)
    stages.update({f"predecessor_{s}": run_stage(pred, s) for s in ("prune", "quantize")})
    return work, pred, stages


def tfidf_row(prepared: Path, sample: list[str], threads: int) -> dict:
    """The classical baseline scored on test, its pickled size, and its own batch-1 / batch-32 timing."""
    splits, meta = {}, None
    for split in ("train", "val", "test"):
        texts, y, meta = load_split(prepared, split)
        splits[split] = (texts, y)
    result, vectorizer, model = fit_and_score(meta["task"], meta["label_names"], splits)
    blob = pickle.dumps((vectorizer, model))
    with threadpool_limits(threads):
        times = []
        for text in sample:
            start = time.perf_counter()
            predict_proba(meta["task"], vectorizer, model, [text])
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(0, len(sample), 32):
            predict_proba(meta["task"], vectorizer, model, sample[i: i + 32])
        batch_seconds = time.perf_counter() - start
    return {"stage": "tfidf_logreg", "macro_f1": result["macro_f1"], "per_label": result["per_label"],
            "size_bytes": len(blob), "gzip_bytes": len(gzip.compress(blob, 6)),
            "params": int(sum(getattr(e, "coef_", np.zeros(0)).size for e in
                              (getattr(model, "estimators_", None) or [model]))),
            # Featurisation is its tokenizer: its batch-1 time is end to end, and the forward-only view is the same.
            "e2e_ms_p50": float(np.percentile(times, 50) * 1e3), "e2e_ms_p95": float(np.percentile(times, 95) * 1e3),
            "latency_ms_p50": float(np.percentile(times, 50) * 1e3),
            "latency_ms_p95": float(np.percentile(times, 95) * 1e3),
            "throughput_per_s": len(sample) / batch_seconds, "timing": "separate, right after; includes featurisation"}


def measure(work: Path, pred: Path, samples: int, threads: int, seed: int = 42) -> dict:
    """Every artifact on test with evaluate's own function (the two teacher-in-ONNX-Runtime references
    included, each distinct artifact timed once, end to end and forward-only, interleaved in random
    order); `final` is models/final, what ships. TF-IDF is timed right after on the same texts."""
    params = yaml.safe_load((work / "params.yaml").read_text())
    paths = {"teacher": work / "models/teacher", "student": work / "models/student",
             "pruned": work / "models/pruned", "final": work / "models/final",
             "predecessor": pred / "models/quantized"}
    cfg = {**params["evaluate"], "threads": threads, "latency_samples": samples}
    rows, speed, _, header = evaluate_stages(paths, cfg, prepared=work / "data/prepared",
                                             max_length=params["data"]["max_length"], seed=seed)
    for name in rows:
        rows[name].update(speed[name])
    rows["tfidf_logreg"] = tfidf_row(work / "data/prepared", header["sample"], threads)  # the texts evaluate timed
    teacher = rows["teacher"]
    rows["tfidf_logreg"].update(f1_retained=rows["tfidf_logreg"]["macro_f1"] / teacher["macro_f1"],
                                compression=teacher["size_bytes"] / rows["tfidf_logreg"]["size_bytes"],
                                speedup=teacher["e2e_ms_p50"] / rows["tfidf_logreg"]["e2e_ms_p50"])
    return {"task": header["task"], "label_names": list(teacher["per_label"]), "test_rows": header["test_rows"],
            "latency_samples": header["latency_samples"], "rows": rows}


def targets(result: dict, stages: dict) -> dict:
    final, tfidf = result["rows"]["final"], result["rows"]["tfidf_logreg"]
    repro_minutes = sum(stages[s]["seconds"] for s in PIPELINE) / 60
    return {"f1_retained": (final["f1_retained"], final["f1_retained"] >= TARGETS["f1_retained"]),
            "compression": (final["compression"], final["compression"] >= TARGETS["compression"]),
            "speedup": (final["speedup"], final["speedup"] >= TARGETS["speedup"]),
            "beats_tfidf": (final["macro_f1"] - tfidf["macro_f1"], final["macro_f1"] >= tfidf["macro_f1"]),
            "repro_minutes": (repro_minutes, repro_minutes <= TARGETS["repro_minutes"])}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__,
            "load_average": os.getloadavg(), "date": datetime.datetime.now().isoformat(timespec="seconds")}


def fmt(v, digits=4):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(results: dict, info: dict, command: str) -> str:
    out = io.StringIO()
    w = lambda s="": out.write(s + "\n")  # noqa: E731
    w("# Benchmark: the default pipeline on real data, against what users would pick instead")
    w()
    w(f"Command: `{command}` · {info['date']} · {info['cpu']} ({info['cpus']} CPUs) · {info['platform']}")
    w(f"Python {info['python']}, torch {info['torch']}, transformers {info['transformers']}, onnxruntime "
      f"{info['onnxruntime']}, scikit-learn {info['scikit-learn']}. Load average at the start: "
      f"{', '.join(f'{x:.2f}' for x in info['load_average'])}.")
    w()
    e2e = any("e2e_ms_p50" in row for res in results.values() for row in res["result"]["rows"].values())
    if e2e:
        w("All models are scored once on the held-out test split; thresholds and best epochs come from val. "
          "The transformer rows are measured by the evaluate stage's own function: one process, every model "
          "taking turns in random order on each text, timed warm; e2e is text in, label out through the path "
          "`predict` runs (batch 1 p50/p95, and 64 texts per call); forward is the model alone. "
          "`teacher_onnx_fp32` / `teacher_onnx_int8` are the teacher exported to ONNX Runtime and that export "
          "with dynamic INT8, the deploy-the-teacher path; \"vs ORT INT8\" compares with the second. TF-IDF is "
          "timed right after on the same texts, featurisation included. Sizes are bytes on disk of the whole "
          "artifact directory (weights, config, tokenizer); `final` is models/final as shipped (with its card); "
          "TF-IDF's is its pickle. `predecessor` is the seed settings: KD alpha 0.7 T 4 (the same student), "
          "magnitude 0.5, dynamic INT8.")
    else:  # a results file from before end-to-end timing: say how that run measured
        w("All models are scored once on the held-out test split; thresholds and best epochs come from val. "
          "This run predates end-to-end timing: its latencies are the forward pass only, the transformer "
          "models interleaved in a fixed rotation (batch 1 p50/p95 over the sampled test texts, two rounds; "
          "batch-32 throughput), and there are no teacher-in-ONNX-Runtime rows (e2e columns: –). TF-IDF is "
          "timed right after on the same texts, featurisation included. Sizes are bytes on disk of the whole "
          "artifact directory; TF-IDF's is its pickle. `final` is `quantized` as shipped in `models/final`. "
          "`predecessor` is the seed settings: KD alpha 0.7 T 4 (the same student), magnitude 0.5, dynamic INT8.")
    for name, res in results.items():
        r = res["result"]
        w()
        w(f"## {name} ({r['task']}, {r['test_rows']} test rows, {r['latency_samples']} texts timed, "
          f"{res['threads']} threads)")
        w()
        labels = list(r["rows"]["teacher"]["per_label"])
        cols = ["model", "macro-F1", *[f"F1 {n}" for n in labels], "size MB", "params",
                "e2e p50 ms", "e2e p95 ms", "e2e batch-64 /s", "forward p50 ms", "× smaller", "× smaller vs ORT INT8",
                "× faster", "× faster vs ORT INT8", "F1 kept"]
        w("| " + " | ".join(cols) + " |")
        w("|" + "---|" * len(cols))
        for row in r["rows"].values():
            cells = [row["stage"], fmt(row["macro_f1"]),
                     *[fmt(row["per_label"].get(n, {}).get("f1")) for n in labels],
                     fmt(row["size_bytes"] / 1e6, 2), fmt(row.get("params")),
                     fmt(row.get("e2e_ms_p50"), 2), fmt(row.get("e2e_ms_p95"), 2), fmt(row.get("e2e_throughput_b64"), 0),
                     fmt(row["latency_ms_p50"], 2), fmt(row["compression"], 1),
                     fmt(row.get("compression_vs_teacher_onnx_int8"), 1), fmt(row["speedup"], 1),
                     fmt(row.get("speedup_vs_teacher_onnx_int8"), 1), fmt(row["f1_retained"], 3)]
            w("| " + " | ".join(cells) + " |")
        w()
        w("| stage | wall s | peak memory MB |")
        w("|---|---:|---:|")
        for stage, s in res["stages"].items():
            w(f"| {stage} | {s['seconds']:.1f} | {s['peak_rss_mb']:.0f} |")
        t = res["targets"]
        w()
        w(f"Pipeline wall time (prepare → export): **{t['repro_minutes'][0]:.1f} min**.")
        w()
        w("| target (final vs teacher) | measured | met |")
        w("|---|---:|---|")
        names = {"f1_retained": "≥ 97% of the teacher's macro-F1", "compression": "≥ 15× smaller on disk",
                 "speedup": "≥ 4× faster at batch 1 (p50)", "beats_tfidf": "macro-F1 ≥ TF-IDF baseline (difference)",
                 "repro_minutes": "default pipeline ≤ 20 min"}
        for key, (value, met) in t.items():
            w(f"| {names[key]} | {value:.3f} | {'yes' if met else '**no**'} |")
    findings = ROOT / "bench" / "FINDINGS.md"  # the analysis of these numbers, written by a person
    if findings.exists():
        w()
        w(findings.read_text(encoding="utf-8").rstrip())
    return out.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--samples", type=int, default=300, help="test texts timed at batch 1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite OUT.md from OUT.json (e.g. after editing bench/FINDINGS.md); runs nothing")
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        args.out.with_suffix(".md").write_text(markdown(saved["datasets"], saved["machine"], saved["command"]),
                                               encoding="utf-8")
        return
    for name in args.datasets:
        if not DATASETS[name]["path"].exists():
            sys.exit(f"bench: {DATASETS[name]['path']} not found; the benchmark needs ../shared/data (see SOURCES.md)")
    info, results = machine(), {}
    command = "make bench" if os.environ.get("MAKELEVEL") else "python bench/run_bench.py " + " ".join(sys.argv[1:])
    for name in args.datasets:
        work, pred, stages = run_pipeline(name, DATASETS[name], args.work)
        result = measure(work, pred, args.samples, args.threads)
        results[name] = {"dataset": str(DATASETS[name]["path"].name), "threads": args.threads, "stages": stages,
                         "result": result, "targets": targets(result, stages)}
        args.out.with_suffix(".json").write_text(json.dumps({"machine": info, "command": command,
                                                             "datasets": results}, indent=1, default=float) + "\n")
        args.out.with_suffix(".md").write_text(markdown(results, info, command), encoding="utf-8")
        print(f"[bench] wrote {args.out}.md / .json ({name} done)", flush=True)


if __name__ == "__main__":
    main()
