"""`make bench`: the default pipeline on four real datasets, several seeds each, against what users would pick instead.

For each dataset (hatespeech, cyberbully, toxic, sentnob) and seed (default 42 43 44) it runs every stage script
of the pipeline with the default params (params.yaml, its data group pointed at the dataset, `seed` set), in a
scratch copy of the project under bench/work/<dataset>/seed<N> (the repo's own DVC outputs are untouched),
recording wall time and peak memory per stage. On the three single-file datasets the seed changes the split, the
initialisation and the batch order (as in `make seeds`); SentNoB comes with official splits (data.split_files),
so there it changes only the initialisation and the order. Then, on the same prepared splits:
  - the predecessor-style model: the same distilled student (params.yaml's distill), magnitude 0.5
    (global, fine-tuned, no teacher in healing) and dynamic INT8 -- the seed settings;
  - the classical baseline: TF-IDF char 2-5-grams + logistic regression, threshold tuned on val.
Every artifact is scored once on test and timed in one process: the transformer models interleaved (batch 1
p50/p95, batch-32 throughput, same threads); TF-IDF right after, same texts, same threads (its time includes
featurisation: it has no separate tokenizer). Per dataset, over the seeds: mean and std (n - 1) of the test
macro-F1 of the teacher, the final model and TF-IDF, final minus TF-IDF paired within each run, and the goal
(final mean >= TF-IDF mean + 0.01 on hatespeech and cyberbully, >= TF-IDF mean on toxic and sentnob).

How long: one default run (pretraining included) takes roughly 20-25 min for hatespeech on 2 cores; toxic,
cyberbully and sentnob about as long or longer, so 4 datasets x 3 seeds is several hours. bench/RESULTS.json
and .md are rewritten after every run; after an interruption `--resume` (`make bench RESUME=1`) keeps each
run whose work dir holds a finished run made with the same params and runs the rest.

    python -m bench.run_bench                                   # 4 datasets x seeds 42 43 44 (hours)
    python -m bench.run_bench --resume                          # continue an interrupted one
    python -m bench.run_bench --datasets sentnob --seeds 42     # one run
    python -m bench.run_bench --quick                           # smoke: tiny models, 5% samples (minutes)
    python -m bench.run_bench --render-only                     # RESULTS.md again from RESULTS.json
    # a variant of the benchmark: the default params with a change, in its own work dir and result files
    python -m bench.run_bench --datasets cyberbully --seeds 42 --set teacher.scratch.hidden=384 \
        --work bench/work/variant --out bench/work/variant/RESULTS

A --set run and the default one become one paired table with bench/compare_bench.py.

Writes bench/RESULTS.md and bench/RESULTS.json (--quick: bench/work/quick/RESULTS.*). Nothing is tuned on test."""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gzip
import io
import json
import os
import pickle
import platform
import runpy
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
from banglacompress.config import load_params
from banglacompress.data import load_split
from banglacompress.evaluate import evaluate_stages

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"
# Per dataset: its `data:` params (on top of params.yaml's), and the goal's margin: the final model's mean test
# macro-F1 over the seeds must reach TF-IDF's mean plus this. The two sets the predecessor was built on ask for a
# point more; on the other two, matching the classical baseline is the bar.
DATASETS = {
    "hatespeech": {"data": {"path": SHARED / "hatespeech_binary.csv", "text_column": "Comments",
                            "label_columns": ["HateSpeech"]}, "margin": 0.01},
    "cyberbully": {"data": {"path": SHARED / "cyberbully_multilabel.csv", "text_column": "comment",
                            "label_columns": ["bully", "sexual", "religious", "threat", "spam"]}, "margin": 0.01},
    "toxic": {"data": {"path": SHARED / "toxic_multilabel.csv", "text_column": "text",  # the header has a BOM
                       "label_columns": ["vulgar", "hate", "religious", "threat", "troll", "Insult"]}, "margin": 0.0},
    # Official splits: data.path is the directory holding them (docs/data.md); val_size, test_size, fraction
    # and split_seed keep params.yaml's values, the only ones allowed with split_files.
    "sentnob": {"data": {"path": SHARED, "text_column": "Data", "label_columns": ["Label"],
                         "split_files": {"train": "sentnob_train.csv", "val": "sentnob_val.csv",
                                         "test": "sentnob_test.csv"}}, "margin": 0.0},
}
PIPELINE = ["prepare", "pretrain_corpus", "pretrain", "train_teacher", "distill", "prune", "quantize", "evaluate", "export"]
# The seed settings, as params on top of the default groups: every method option the default method set is
# nulled first (the stage rejects an option its method does not take, e.g. quantize.embedding_bits for dynamic).
PREDECESSOR = {"prune": {**{k: None for k in prune.OPTION_KEYS}, "method": "magnitude", "sparsity": 0.5,
                         "granularity": "global", "kd_alpha": 0.0},
               "quantize": {**{k: None for k in quantize.OPTION_KEYS}, "method": "dynamic"}}
# The pipeline's standing targets; repro_minutes: a default `dvc repro` (pretraining included) within 30 min on 2 cores
TARGETS = {"f1_retained": 0.97, "compression": 15.0, "speedup": 4.0, "repro_minutes": 30.0}
CODE = ("stages", "banglacompress", "dvc.yaml", "params.yaml")
RUN_FILE = "bench_run.json"  # a run's record (stage times, rows, targets), written last: there means finished
# Stages a rerun takes from the run made in the same directory before, when their deps and params are the same
# (reused_stage): pretraining, which takes 11-16 of a run's 17-22 minutes and only depends on the text side, and
# the teacher's fine-tune (2-6 min), unchanged by a sweep of distill or a later stage, as in `dvc exp run`.
REUSABLE = ("pretrain", "train_teacher")

# --quick: models small enough that a whole run takes seconds (the sizes of the tests' tiny_params), pretraining
# on the train split alone (one epoch, no stall check: a tiny model stays near word frequencies), a few texts timed,
# and a 5% sample of each single-file dataset. Checks the wiring only.
TINY = {"family": "bert", "layers": 1, "hidden": 32, "heads": 2, "ffn": 64, "vocab_size": 300}
QUICK = {"teacher": {"scratch": {**TINY, "layers": 2, "hidden": 48, "ffn": 96}, "epochs": 3, "lr": 0.003,
                     "patience": 0},
         "student": {"scratch": TINY},
         "distill": {"epochs": 3, "lr": 0.003, "patience": 0, "min_teacher_margin": 0.0},
         "prune": {"fine_tune_epochs": 1, "lr": 0.001},
         "pretrain": {"corpora": [], "epochs": 1, "batch_size": 16, "min_context_gain": None},
         "evaluate": {"latency_samples": 10, "references": False}}
QUICK_FRACTION = 0.05
QUICK_SAMPLES = 10


def quick_params(params: dict) -> dict:
    """params with the --quick sizes (QUICK) on top: one thread, as tiny models only wait for a second one."""
    params = copy.deepcopy(params)
    for group, overrides in QUICK.items():
        params[group].update(copy.deepcopy(overrides))
    params["threads"] = 1
    return params


def quick_datasets(datasets: dict) -> dict:
    """--quick: a sample of each single-file dataset (given splits take no data.fraction: they stay whole)."""
    return {name: spec if spec["data"].get("split_files") else
            {**spec, "data": {**spec["data"], "fraction": QUICK_FRACTION}} for name, spec in datasets.items()}


def run_params(spec: dict, seed: int, base: dict) -> dict:
    """`base` (params.yaml) with the dataset's data params and this seed. Without data.split_seed the seed also
    draws a single-file dataset's split, so the runs differ in split, initialisation and order; given splits stay."""
    params = copy.deepcopy(base)
    params["data"].update({k: str(v) if isinstance(v, Path) else copy.deepcopy(v) for k, v in spec["data"].items()})
    params["seed"] = seed
    return params


def parse_override(value: str) -> tuple[str, object]:
    """--set teacher.scratch.hidden=384: a params.yaml key as a dotted path, its value read as YAML (like `dvc exp
    run -S`). data.* and seed are the benchmark's own (the dataset and the seed of each run)."""
    key, sep, raw = value.partition("=")
    parts = key.split(".")
    if not sep or not all(parts) or parts[0] in ("data", "seed"):
        raise argparse.ArgumentTypeError(
            f"--set {value!r}: expected KEY=VALUE with KEY a dotted params.yaml path (teacher.scratch.hidden=384); "
            "data.* and seed are set by the benchmark per dataset and run")
    return key, yaml.safe_load(raw)


def with_overrides(params: dict, overrides: list[tuple[str, object]]) -> dict:
    """A copy of params with each --set applied; a key params.yaml does not have is an error (a typo would
    otherwise run the default again under the variant's name)."""
    params = copy.deepcopy(params)
    for key, value in overrides:
        *path, last = key.split(".")
        node = params
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise KeyError(f"--set {key}: params.yaml has no such key")
        node[last] = value
    return params


def workdir_params(params: dict) -> dict:
    """params as a scratch copy gets them: the pretraining corpora stay where the repo keeps them (data/raw/ is
    not copied), so their paths become absolute."""
    corpora = [{**c, "path": str((ROOT / c["path"]).resolve())} for c in params.get("pretrain", {}).get("corpora", [])]
    return {**params, "pretrain": {**params.get("pretrain", {}), "corpora": corpora}}


def make_workdir(work: Path, params: dict, share_from: Path | None = None) -> None:
    """A scratch copy of the project; `share_from` lends its prepared data and teacher/student."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for item in CODE:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    (work / "params.yaml").write_text(yaml.safe_dump(workdir_params(params), sort_keys=False, allow_unicode=True),
                                      encoding="utf-8")
    if share_from is not None:
        for item in ("data/prepared", "models/teacher", "models/student"):
            shutil.copytree(share_from / item, work / item)


def _stage_in_process(work: Path, stage: str, log: Path) -> int:
    """The stage script run in this process, as `python stages/<stage>.py` in `work` runs it; its exit code.
    For --quick: starting Python and importing torch is most of a tiny stage's time."""
    cwd, argv = Path.cwd(), sys.argv
    os.chdir(work)
    sys.argv = [f"stages/{stage}.py"]  # stage_main names the stage after it
    try:
        with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(f"stages/{stage}.py", run_name="__main__")
    except SystemExit as stop:  # a UserError ends a stage with exit(2)
        return 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
    finally:
        os.chdir(cwd)
        sys.argv = argv
    return 0


def run_stage(work: Path, stage: str, in_process: bool = False) -> dict:
    """Run one stage script; wall seconds and the peak resident memory of its process (wait4; none when
    `in_process`, which shares this process's)."""
    log = work / "logs" / f"{stage}.log"
    log.parent.mkdir(exist_ok=True)
    start = time.perf_counter()
    if in_process:
        code, peak = _stage_in_process(work, stage, log), None
    else:
        # PYTHONPATH: the stage imports the package copied into `work` (what --resume compares), not the one
        # installed in the venv (an editable install of the repo, which may change while a benchmark runs).
        env = {**os.environ, "CI": "true", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(work.resolve())}
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, f"stages/{stage}.py"], cwd=work, env=env, stdout=out, stderr=out)
            _, status, usage = os.wait4(proc.pid, 0)
        code, peak = os.waitstatus_to_exitcode(status), round(usage.ru_maxrss / 1024, 1)
    seconds = time.perf_counter() - start
    if code != 0:
        sys.exit(f"bench: stage {stage} failed in {work}; see {log}:\n{log.read_text()[-2000:]}")
    print(f"[bench] {work.parent.name}/{work.name}/{stage}: {seconds:.1f}s"
          + (f", peak {peak:.0f} MB" if peak else ""), flush=True)
    return {"seconds": round(seconds, 1), "peak_rss_mb": peak}


def set_aside(work: Path) -> Path | None:
    """The finished run last made in `work`, moved next to it (so that make_workdir starts clean) for
    reused_stage to draw on; None when there is none. An unfinished run is not kept, but a run it interrupted
    before it finished is still set aside from then."""
    previous = work.with_name(f".{work.name}.previous")
    if (work / RUN_FILE).exists():
        if previous.exists():
            shutil.rmtree(previous)
        work.rename(previous)
    return previous if (previous / RUN_FILE).exists() else None


def _lookup(params: dict, key: str):
    for part in key.split("."):
        params = params.get(part) if isinstance(params, dict) else None
    return params


def _tree(path: Path) -> dict[str, bytes] | None:
    """A file's or a directory's bytes by relative path; None when it is missing."""
    if path.is_file():
        return {"": path.read_bytes()}
    if not path.is_dir():
        return None
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def _same_tree(a: Path, b: Path) -> bool:
    """Whether a path exists under `a` with the same bytes as under `b` (each side read once)."""
    tree = _tree(a)
    return tree is not None and tree == _tree(b)


def check_imported_package(package_file: str, root: Path = ROOT) -> None:
    """Stop when the banglacompress imported is not `root`'s and differs from it. In a run dir (`cd bench/work/D/
    seedN && PYTHONPATH=REPO python -m bench.X`) `python -m` puts the working directory first on sys.path, so the
    run's own copy of the package, the code of the run, is imported instead of the repo's: a screen of code changed
    since the run would silently run the run's old code. A copy equal to the repo's is fine."""
    used = Path(package_file).resolve().parents[1]
    if used == root.resolve():
        return
    if _tree(used / "banglacompress") != _tree(root / "banglacompress"):
        sys.exit(f"error: this imported banglacompress from {used}, whose copy differs from {root}'s (a run dir holds "
                 f"the code it was run with); run it with PYTHONSAFEPATH=1 PYTHONPATH={root} so that the repo's code "
                 f"is imported")


# The code the train_teacher stage runs: a run made before a change to the later stages' code still has this
# code's teacher (run_teacher_scores(..., teacher_code_only=True))
TEACHER_CODE = tuple(f"banglacompress/{m}.py" for m in ("config", "data", "integrity", "models", "pooling", "runtime",
                                                         "scoring", "train")) + ("stages/train_teacher.py",)


def run_teacher_scores(run: Path, teacher: dict, params: dict, seed: int, teacher_code_only: bool = False
                       ) -> dict | None:
    """The scores of a finished make-bench run's own teacher when it is the one asked for: trained with these
    teacher params at this seed (and the same threads and max_length), by this code (with teacher_code_only, by
    the same TEACHER_CODE) on this CPU type, so its train_teacher stage ran the same function on the same split
    and pretrained encoder. Else None."""
    record = run / RUN_FILE
    if not (record.exists() and (run / "metrics" / "train_teacher.json").exists()):
        return None
    made = load_params(run / "params.yaml")
    code, ours = code_files(run), code_files(ROOT)
    if teacher_code_only:
        code, ours = ({k: v for k, v in files.items() if k in TEACHER_CODE} for files in (code, ours))
    if (made["teacher"] != teacher or made["seed"] != seed or made["threads"] != params["threads"]
            or made["data"]["max_length"] != params["data"]["max_length"] or code != ours):
        return None
    result = json.loads(record.read_text(encoding="utf-8"))
    if not same_cpu(result):
        return None
    metrics = json.loads((run / "metrics" / "train_teacher.json").read_text(encoding="utf-8"))
    return {"val_macro_f1": metrics["val_macro_f1_tuned"],
            "test_macro_f1": result["result"]["rows"]["teacher"]["macro_f1"],
            "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
            "seconds": result["stages"]["train_teacher"]["seconds"], "from_run": str(run)}


def reused_stage(previous: Path, work: Path, stage: str) -> dict | None:
    """DVC's rule between two scratch copies: when every dep of `stage` (dvc.yaml) has the same bytes in
    `previous` and `work`, and every param it lists the same value, the stage would compute the same outputs
    (the stages are deterministic on one machine: README, Reproducibility), so they are copied from `previous`
    and its recorded wall time and memory are returned, marked `reused`. Else None: the stage runs."""
    spec = yaml.safe_load((work / "dvc.yaml").read_text(encoding="utf-8"))["stages"][stage]
    before, now = (yaml.safe_load((d / "params.yaml").read_text(encoding="utf-8")) for d in (previous, work))
    record = json.loads((previous / RUN_FILE).read_text(encoding="utf-8"))
    if not same_cpu(record):
        return None
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", []) + spec.get("metrics", [])]
    if (not all(_same_tree(previous / dep, work / dep) for dep in spec["deps"])
            or any(_lookup(before, key) != _lookup(now, key) for key in spec.get("params", []))
            or not all((previous / out).exists() for out in outs)):
        return None
    for out in outs:
        (work / out).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (previous / out).is_dir() else shutil.copy)(previous / out, work / out)
    took = record["stages"][stage]
    print(f"[bench] {work.parent.name}/{work.name}/{stage}: reused from the previous run here (same deps, params "
          f"and CPU type), which took {took['seconds']:.1f}s", flush=True)
    return {**took, "reused": True}


def run_pipeline(work: Path, params: dict, in_process: bool = False) -> tuple[Path, dict]:
    """Every stage in a scratch copy at `work`, then the predecessor's prune and quantize in a copy next to it
    that shares its data, teacher and student. Returns (the predecessor's copy, stage wall times and memory).
    Pretraining and the teacher, most of a run's time, are reused from the run made here before when DVC would
    skip them too."""
    previous = set_aside(work)
    make_workdir(work, params)
    stages = {}
    for stage in PIPELINE:
        stages[stage] = ((previous and stage in REUSABLE and reused_stage(previous, work, stage))
                         or run_stage(work, stage, in_process))
    if previous:
        shutil.rmtree(previous)
    old = copy.deepcopy(params)
    for group, overrides in PREDECESSOR.items():
        old[group].update(overrides)
    pred = work.with_name(f"{work.name}_predecessor")
    make_workdir(pred, old, share_from=work)
    stages.update({f"predecessor_{s}": run_stage(pred, s, in_process) for s in ("prune", "quantize")})
    return pred, stages


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
                                             max_length=params["data"]["max_length"], seed=seed,
                                             references=cfg.get("references", True))  # as the evaluate stage
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


def _cpuinfo_field(name: str) -> str:
    """The first `name : value` line of /proc/cpuinfo ('' where there is none, or no /proc/cpuinfo)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(name)), "")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (avx512f, amx_bf16, ...), empty off Linux."""
    return set(_cpuinfo_field("flags").split())


def cpu_type() -> str:
    """The CPU model and whether it has AVX-512: float kernels, and so trained weights, differ across the two
    (README, Reproducibility), so runs are only reused or resumed on the same type."""
    return (_cpuinfo_field("model name") or platform.processor()) + (", AVX-512" if "avx512f" in cpu_flags() else "")


def machine() -> dict:
    cpu = cpu_type()
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__,
            "load_average": os.getloadavg(), "date": datetime.datetime.now().isoformat(timespec="seconds")}


def stats(values: list[float]) -> dict:
    """mean, std (n - 1; 0 for one value), min, max and the values: the seed statistics every table quotes."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": float(min(values)), "max": float(max(values)), "values": values}



def outside_noise(changes: list[float]) -> bool:
    """Paired changes (one per seed) that are a result, not seed noise: they agree on their sign and their
    mean is more than 2 std (n - 1) from zero. Every bench table that compares two settings says it this way."""
    same_sign = all(c > 0 for c in changes) or all(c < 0 for c in changes)
    return bool(len(changes) > 1 and same_sign and abs(np.mean(changes)) > 2 * np.std(changes, ddof=1))

def fmt(v, digits=4):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)



def code_files(root: Path) -> dict[str, bytes]:
    """The pipeline code a run copies (CODE less params.yaml, compared on its own), by path: what --resume
    compares, so that a run made by other code is never kept."""
    files = {}
    for item in CODE:
        src = root / item
        if item == "params.yaml" or not src.exists():
            continue
        files.update({str(Path(item) / rel) if rel else item: data for rel, data in _tree(src).items()})
    return files


def finished_run(work: Path, params: dict) -> dict | None:
    """The record of the run in `work` if it finished (export ran, the record was written) with these params
    and this code."""
    record = work / RUN_FILE
    if not ((work / "metrics" / "export.json").exists() and record.exists()):
        return None
    if yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8")) != workdir_params(params):
        print(f"[bench] {work}: finished, but with other params: running it again", flush=True)
        return None
    if code_files(work) != code_files(ROOT):
        print(f"[bench] {work}: finished, but by other code (stages/, banglacompress/ or dvc.yaml changed since): "
              "running it again", flush=True)
        return None
    run = json.loads(record.read_text(encoding="utf-8"))
    if not same_cpu(run):
        print(f"[bench] {work}: finished, but on another CPU type ({run['cpu']}): running it again", flush=True)
        return None
    return run


def same_cpu(run: dict) -> bool:
    """Whether a run's record was made on this CPU type (records from before the field existed: assumed so)."""
    return run.get("cpu", cpu_type()) == cpu_type()


def bench_run(work: Path, params: dict, *, samples: int, threads: int, resume: bool = False,
              in_process: bool = False) -> dict:
    """One default pipeline and the predecessor, measured: {seed, work, threads, stages, result, targets}.
    With `resume`, a finished run's saved record instead (nothing reruns)."""
    if resume and (done := finished_run(work, params)) is not None:
        print(f"[bench] {work}: finished earlier, kept (--resume)", flush=True)
        return with_val_scores(with_corpus_counts(done, work), work)
    pred, stages = run_pipeline(work, params, in_process)
    result = measure(work, pred, samples, threads)
    run = with_corpus_counts({"seed": params["seed"], "cpu": cpu_type(), "threads": threads,
                              "work": str(work.relative_to(ROOT) if work.is_relative_to(ROOT) else work),
                              "stages": stages, "result": result, "targets": targets(result, stages)}, work)
    run = with_val_scores(run, work)
    run = json.loads(json.dumps(run, default=float))  # numpy numbers -> JSON's: the same record as a resumed run's
    (work / RUN_FILE).write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    return run


def with_corpus_counts(run: dict, work: Path) -> dict:
    """The run's record with its pretraining corpus counts (metrics/pretrain_corpus.json: rows read, val/test
    overlaps removed, duplicates, kept, per source and in total), for records written before they were kept."""
    counts = work / "metrics" / "pretrain_corpus.json"
    if "pretrain_corpus" not in run and counts.exists():
        run = {**run, "pretrain_corpus": json.loads(counts.read_text(encoding="utf-8"))}
    return run


def with_val_scores(run: dict, work: Path) -> dict:
    """The run's record with the val macro-F1 of its teacher and final model, as the stages chose them (thresholds
    tuned on val): what a comparison of two settings decides on, test being only reported."""
    teacher, final = (work / "metrics" / f"{stage}.json" for stage in ("train_teacher", "quantize"))
    if "val" not in run and teacher.exists() and final.exists():
        run = {**run, "val": {"teacher": json.loads(teacher.read_text(encoding="utf-8"))["val_macro_f1_tuned"],
                              "final": json.loads(final.read_text(encoding="utf-8"))["val_macro_f1"]}}
    return run


def summarize(runs: list[dict], margin: float) -> dict:
    """One dataset over its runs: test macro-F1 of teacher, final and TF-IDF (mean, std n - 1, per seed), final
    minus TF-IDF, and the goal: final mean >= TF-IDF mean + margin."""
    f1 = {key: stats([run["result"]["rows"][row]["macro_f1"] for run in runs])
          for key, row in (("teacher", "teacher"), ("final", "final"), ("tfidf", "tfidf_logreg"))}
    # Paired within each run: both models saw the same split and seed, so the split's share of the spread (on a
    # random split, the larger share) drops out of the difference's std.
    diff = stats([final - tfidf for final, tfidf in zip(f1["final"]["values"], f1["tfidf"]["values"])])
    summary = {"seeds": [run["seed"] for run in runs]}
    for prefix, s in (*((f"{key}_macro_f1", f1[key]) for key in f1), ("final_minus_tfidf", diff)):
        summary.update({f"{prefix}_mean": s["mean"], f"{prefix}_std": s["std"], f"{prefix}_per_seed": s["values"]})
    threshold = f1["tfidf"]["mean"] + margin
    summary["goal"] = {"rule": f"final_macro_f1_mean >= tfidf_macro_f1_mean + {margin}", "margin": margin,
                       "threshold": threshold,
                       "met": bool(f1["final"]["mean"] >= threshold - 1e-12)}  # a tie is met, float rounding aside
    return summary


def run_tables(w, name: str, run: dict) -> None:
    """One run: its model rows, then its stage times and targets, a line each."""
    r = run["result"]
    w()
    w(f"### {name}, seed {run['seed']} ({r['task']}, {r['test_rows']} test rows, {r['latency_samples']} texts "
      f"timed, {run['threads']} threads)")
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
    w("Stage wall s (peak MB): " + " · ".join(
        f"{stage} {s['seconds']:.1f}" + (f" ({s['peak_rss_mb']:.0f})" if s["peak_rss_mb"] else "")
        + (" reused" if s.get("reused") else "") for stage, s in run["stages"].items()))
    names = {"f1_retained": "F1 kept ≥ 0.97", "compression": "≥ 15× smaller",
             "speedup": "≥ 4× faster (batch 1 p50)", "beats_tfidf": "final − TF-IDF ≥ 0",
             "repro_minutes": f"pipeline ≤ {TARGETS['repro_minutes']:.0f} min"}
    if total := run.get("pretrain_corpus", {}).get("total"):
        w()
        w(f"Pretraining corpus (train split + pretrain.corpora): {total['rows_read']:,} rows read, "
          f"{total['eval_overlap']:,} removed as near-duplicates of a val/test text, {total['duplicates']:,} "
          f"duplicates and {total['empty']:,} empty dropped, {total['kept']:,} kept.")
    w()
    w("Targets, final vs teacher: " + " · ".join(
        f"{names[key]}: {value:.3f} {'yes' if met else '**no**'}" for key, (value, met) in run["targets"].items()))


def markdown(saved: dict) -> str:
    """RESULTS.md from RESULTS.json's content: the summary over seeds first, then every run."""
    info, datasets = saved["machine"], saved["datasets"]
    out = io.StringIO()
    w = lambda s="": out.write(s + "\n")  # noqa: E731
    w("# Benchmark: the default pipeline on real data, over seeds, against what users would pick instead")
    w()
    w(f"Command: `{saved['command']}` · {info['date']} · {info['cpu']} ({info['cpus']} CPUs) · {info['platform']}")
    w(f"Python {info['python']}, torch {info['torch']}, transformers {info['transformers']}, onnxruntime "
      f"{info['onnxruntime']}, scikit-learn {info['scikit-learn']}. Load average at the start: "
      f"{', '.join(f'{x:.2f}' for x in info['load_average'])}.")
    if saved.get("overrides"):
        w()
        w("**A variant, not the default:** params.yaml with " + ", ".join(
            f"`{k}={json.dumps(v, ensure_ascii=False)}`" for k, v in saved["overrides"].items()) + ".")
    w()
    w("| dataset | seeds | teacher macro-F1 | final macro-F1 | TF-IDF macro-F1 | final − TF-IDF (paired) | goal "
      "| met |")
    w("|---|---|---|---|---|---|---|---|")
    for name, d in datasets.items():
        s, goal = d["summary"], d["summary"]["goal"]
        pm = lambda key, sign="": f"{s[key + '_mean']:{sign}.4f} ± {s[key + '_std']:.4f}"  # noqa: E731
        bar = "final ≥ TF-IDF" + (f" + {goal['margin']}" if goal["margin"] else "")
        w(f"| {name} | {', '.join(map(str, s['seeds']))} | {pm('teacher_macro_f1')} | {pm('final_macro_f1')} | "
          f"{pm('tfidf_macro_f1')} | {pm('final_minus_tfidf', '+')} | {bar} | {'yes' if goal['met'] else '**no**'} |")
    w()
    w("Test macro-F1, mean ± std (n − 1) over the seeds; the goal compares the means. A seed sets params.yaml's "
      "`seed`: on a single-file dataset it draws the split, the initialisation and the batch order; on given "
      "splits (SentNoB's official ones) only the last two. final − TF-IDF is taken within each run (same split, "
      "same seed) and then averaged, so its std is the spread of the difference, not of either model.")
    w()
    w("Within each run all models are scored once on the held-out test split; thresholds and best epochs come "
      "from val. The transformer rows are measured by the evaluate stage's own function: one process, every model "
      "taking turns in random order on each text, timed warm; e2e is text in, label out through the path "
      "`predict` runs (batch 1 p50/p95, and 64 texts per call); forward is the model alone. "
      "`teacher_onnx_fp32` / `teacher_onnx_int8` are the teacher exported to ONNX Runtime and that export "
      "with dynamic INT8, the deploy-the-teacher path; \"vs ORT INT8\" compares with the second. TF-IDF is "
      "timed right after on the same texts, featurisation included. Sizes are bytes on disk of the whole "
      "artifact directory (weights, config, tokenizer); `final` is models/final as shipped (with its card); "
      "TF-IDF's is its pickle. `predecessor` is the seed settings on the same distilled student: "
      "magnitude 0.5, dynamic INT8.")
    for name, d in datasets.items():
        w()
        w(f"## {name} ({d['files']})")
        for run in d["runs"]:
            run_tables(w, name, run)
    findings = ROOT / "bench" / "FINDINGS.md"  # the analysis of these numbers, written by a person
    if findings.exists() and not saved.get("quick"):
        w()
        w(findings.read_text(encoding="utf-8").rstrip())
    return out.getvalue()


def save(out: Path, saved: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(saved, indent=1, default=float) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(saved), encoding="utf-8")


def input_files(spec: dict) -> list[Path]:
    data = spec["data"]
    given = data.get("split_files")
    return [Path(data["path"]) / f for f in given.values()] if given else [Path(data["path"])]


def bench(datasets: dict, seeds: list[int], base: dict, *, work: Path, out: Path, samples: int, threads: int,
          resume: bool = False, in_process: bool = False, command: str = "", quick: bool = False,
          overrides: list[tuple[str, object]] = ()) -> dict:
    """Every (dataset, seed) run in turn, under work/<dataset>/seed<N>; OUT.json and OUT.md rewritten after each,
    so an interrupted benchmark leaves what it finished (and --resume continues it)."""
    saved = {"machine": machine(), "command": command, "seeds": list(seeds), "quick": quick,
             "overrides": dict(overrides), "datasets": {}}
    base = with_overrides(base, overrides)
    start = time.perf_counter()
    for name, spec in datasets.items():
        runs = []
        for seed in seeds:
            runs.append(bench_run(work / name / f"seed{seed}", run_params(spec, seed, base), samples=samples,
                                  threads=threads, resume=resume, in_process=in_process))
            saved["datasets"][name] = {"files": ", ".join(p.name for p in input_files(spec)),
                                       "summary": summarize(runs, spec["margin"]), "runs": runs}
            save(out, saved)
            print(f"[bench] {name} seed {seed} done, {(time.perf_counter() - start) / 60:.1f} min so far; wrote "
                  f"{out}.md / .json", flush=True)
    return saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--work", type=Path, help="scratch copies (default bench/work; --quick: bench/work/quick)")
    ap.add_argument("--samples", type=int, help=f"test texts timed at batch 1 (default 300; --quick: {QUICK_SAMPLES})")
    ap.add_argument("--threads", type=int, help="threads of the measurement (default 2; --quick: 1)")
    ap.add_argument("--out", type=Path, help="OUT.json / OUT.md (default bench/RESULTS; --quick: WORK/RESULTS)")
    ap.add_argument("--resume", action="store_true",
                    help="keep every run whose work dir holds a finished run with the same params; run the rest")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: tiny models, 5%% of each single-file dataset, stages in this process")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite OUT.md (and the targets in OUT.json) from OUT.json's runs; runs nothing")
    ap.add_argument("--set", action="append", type=parse_override, default=[], metavar="KEY=VALUE",
                    help="a variant: params.yaml's KEY (dotted path) set to VALUE in every run; needs --work and --out")
    args = ap.parse_args()
    if args.set and not (args.work and args.out):
        ap.error("--set runs a variant: give it its own --work and --out, so the default benchmark's runs "
                 "and bench/RESULTS are not replaced by it")
    work = args.work or (ROOT / "bench" / "work" / "quick" if args.quick else ROOT / "bench" / "work")
    out = args.out or (work / "RESULTS" if args.quick else ROOT / "bench" / "RESULTS")
    if args.render_only:
        saved = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        if not all("summary" in d for d in saved["datasets"].values()):
            sys.exit(f"bench: {out}.json is a single-seed result from before the summary over seeds; "
                     "rerun the benchmark to write one")
        for d in saved["datasets"].values():  # the targets are derived from the stored run: follow TARGETS
            d["runs"] = [with_corpus_counts(run, ROOT / run["work"]) for run in d["runs"]]
            for run in d["runs"]:
                run["targets"] = targets(run["result"], run["stages"])
        save(out, saved)
        return
    base = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    try:
        with_overrides(base, args.set)
    except KeyError as e:
        sys.exit(f"bench: {e.args[0]}")
    datasets = {name: DATASETS[name] for name in args.datasets}
    if args.quick:
        base, datasets = quick_params(base), quick_datasets(datasets)
    needed = [p for spec in datasets.values() for p in input_files(spec)]
    needed += [ROOT / c["path"] for c in base["pretrain"]["corpora"]]
    if missing := [str(p) for p in needed if not p.exists()]:
        sys.exit(f"bench: not found: {', '.join(missing)}; the benchmark needs ../shared/data (see SOURCES.md) "
                 "and the pretraining corpora in data/raw (`make data`)")
    command = "make bench" if os.environ.get("MAKELEVEL") else "python -m bench.run_bench " + " ".join(sys.argv[1:])
    bench(datasets, args.seeds, base, work=work, out=out, resume=args.resume, quick=args.quick,
          samples=args.samples or (QUICK_SAMPLES if args.quick else 300),
          threads=args.threads or (1 if args.quick else 2), in_process=args.quick, command=command,
          overrides=args.set)


if __name__ == "__main__":
    main()
