"""Can the student learn its soft targets when it has the TF-IDF model's features? (not a test)

bench/target_gap_*.md found the student 0.016-0.031 val macro-F1 below the targets it is distilled on, (1 - w) *
teacher + w * TF-IDF logits (distill.tfidf_weight), on every dataset measured. Part of those targets is a linear
function of char n-gram counts, which a one-block subword transformer has to imitate from subword tokens. Here the
distill stage's student gets the n-grams too: its logits plus a linear head over the baseline's features (TF-IDF of
char_wb 2-5-grams, fitted on the train split; banglacompress.baseline), initialised at w times the baseline's
regression (so it starts as the TF-IDF part of its targets), then trained with the student or held there (HEADS).
Everything else is the run's distill stage (banglacompress.distill.kd_targets, build_student, build_kd, fit).
Then the run's prune stage (banglacompress.prune.prune_model) prunes and heals the hybrid, the head inside it, and
its quantize method (banglacompress.artifact.quantize_model) quantizes the transformer alone; the head's logits are
added in FP32. On finished `make bench` runs, each on its own split, eight rows:

  tfidf_char      the baseline (fitted here, as bench_stacking does)
  targets         the soft targets themselves as a classifier: the ceiling of a student that learns them exactly
  student         the run's own distilled student (models/student)
  final           the run's own final model (metrics/quantize.json on val, bench_run.json on test)
  student_ngram   the student with the n-gram head, distilled here, the head trained with it
  student_ngram_frozen  the same with the head held at its start: the transformer learns the rest of the targets
  final_ngram, final_ngram_frozen  those two after the run's prune and quantize params: the hybrid final models

Changes are paired within each run, against tfidf_char, the run's student and the run's final model. The head adds features x
outputs weights and the features' n-gram vocabulary to the model, and needs the n-grams computed beside the
tokenizer at inference: a size and a deployment cost, reported in the JSON, that the stage chain does not have
(the head's weights are left in FP32 here, and its latency is not measured).

    python -m bench.bench_hybrid --runs bench/work/toxic/seed44 --out bench/hybrid_toxic

Val: thresholds tuned on val in every row; test: scored once with them. Writes <out>.json and <out>.md."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from banglacompress.artifact import quantize_model
from banglacompress.baseline import fit_tfidf_lr, predict_proba
from banglacompress.config import read_json
from banglacompress.data import Encoded, class_weights
from banglacompress.distill import blend_tfidf, build_kd, build_student, kd_targets
from banglacompress.models import load_model_dir
from banglacompress.prune import prune_model
from banglacompress.scoring import probabilities
from banglacompress.train import fit, fit_options, predict_logits, seed_everything

from .bench_stacking import load_run, parse_runs, render, scored, summarize
from .run_bench import RUN_FILE, machine

ROWS = ("tfidf_char", "targets", "student", "final", "student_ngram", "student_ngram_frozen", "final_ngram",
        "final_ngram_frozen")


def regression_weights(task: str, model) -> tuple[np.ndarray, np.ndarray]:
    """The fitted regression as (features x outputs weights, bias), in the form logits_of(predict_proba) takes:
    per-label logits for binary and multi-label, log-probabilities up to a per-row shift for multi-class."""
    if task == "multilabel":
        return (np.stack([e.coef_[0] for e in model.estimators_], axis=1),
                np.array([e.intercept_[0] for e in model.estimators_]))
    return model.coef_.T, model.intercept_


class NgramHead(torch.nn.Module):
    """A linear model over each text's sparse n-gram features. Models here are called with input_ids and
    attention_mask only (train.fit, predict_logits, pruning's calibration), so a text's feature row is looked up
    by its token ids."""

    def __init__(self, rows: dict[tuple, int], features, weight: np.ndarray, bias: np.ndarray):
        super().__init__()
        self.rows, self.features = rows, features
        self.table = torch.nn.EmbeddingBag(weight.shape[0], weight.shape[1], mode="sum")
        self.bias = torch.nn.Parameter(torch.from_numpy(bias.astype(np.float32)))
        with torch.no_grad():
            self.table.weight.copy_(torch.from_numpy(weight.astype(np.float32)))

    def forward(self, input_ids, attention_mask, **_):
        keys = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask)]
        x = self.features[[self.rows[k] for k in keys]]  # CSR rows of this batch
        ngram = self.table(torch.from_numpy(x.indices).long(), torch.from_numpy(x.indptr[:-1]).long(),
                           per_sample_weights=torch.from_numpy(x.data).float())
        return SimpleNamespace(logits=ngram + self.bias)


def attach(model, head: NgramHead):
    """Make `model` the hybrid: `head` becomes one of its modules (trained, restored to the best epoch and kept
    through pruning with it) and its logits are added to the model's on every call, so the package's own fit,
    predict_logits and prune_model see the hybrid. Returns the hook's handle (remove it to export the transformer)."""
    model.ngram_head = head

    def add(module, args, kwargs, out):
        ids, mask = kwargs.get("input_ids", args[0] if args else None), kwargs.get("attention_mask")
        out.logits = out.logits + head(ids, mask).logits.to(out.logits.device, out.logits.dtype)
        return out
    return model.register_forward_hook(add, with_kwargs=True)


def compressed(params: dict, model, tokenizer, hook, splits: dict, sets: dict, run: Path, desc: str) -> dict:
    """The run's prune stage on the hybrid (the head inside it), then its quantize method on the transformer alone,
    the head's logits added in FP32: the probabilities on `sets` (val and test, encoded) of a final model with the
    n-gram head."""
    (train, y_train), (_, y_val) = splits["train"], splits["val"]
    max_length, seed = params["data"]["max_length"], params["seed"]
    done, _ = prune_model(params["prune"], model, tokenizer, train=(train, y_train), val=(sets["val"], y_val),
                          task=splits["task"], teacher_dir=run / "models" / "teacher", seed=seed,
                          max_length=max_length, desc=f"{desc} prune")
    hook.remove()
    head = model.ngram_head
    del model.ngram_head  # the transformer alone is exported and quantized
    quantized = quantize_model(params["quantize"], model, tokenizer, prepared=run / "data" / "prepared",
                               max_length=max_length, seed=seed)
    probs = {split: probabilities(splits["task"], predict_logits(quantized, encoded) + predict_logits(head, encoded))
             for split, encoded in sets.items()}
    return {"probs": probs, "sparsity": done["sparsity"],
            "transformer_bytes": len(getattr(quantized, "onnx_bytes", b"")) or None}


# The n-gram head's two settings: trained with the student, or held at its start (w x the regression), so that the
# transformer learns only the rest of its targets: the teacher's share, and what the regression gets wrong.
HEADS = {"student_ngram": True, "student_ngram_frozen": False}
FINALS = tuple(name.replace("student", "final") for name in HEADS)  # the same after the run's prune and quantize


def ngram_students(params: dict, splits: dict, fitted_lr, teacher: tuple, run: Path, desc: str) -> list[dict]:
    """The run's distill stage with the n-gram head (module docstring), once per HEADS entry; their rows.
    teacher: the run's teacher as load_model_dir returns it (model, tokenizer, inference info)."""
    (train, y_train), (val, y_val), (test, y_test) = splits["train"], splits["val"], splits["test"]
    meta, task, seed = splits["meta"], splits["task"], params["seed"]
    cfg, max_length = params["distill"], params["data"]["max_length"]
    teacher, teacher_tok, teacher_info = teacher
    kd = kd_targets(cfg, meta, train=(train, y_train), val=(val, y_val), teacher=teacher, teacher_tok=teacher_tok,
                    teacher_info=teacher_info, max_length=max_length, seed=seed,
                    corpus=run / "data" / "pretrain_corpus.txt")
    vectorizer, regression = fitted_lr
    weight, bias = regression_weights(task, regression)
    w = cfg.get("tfidf_weight", 0.0)
    weights = class_weights(y_train, task) if cfg.get("class_weights", True) else None
    texts = kd.texts + val + test
    features = vectorizer.transform(texts).tocsr()
    rows = []
    for (name, train_head), final_name in zip(HEADS.items(), FINALS):
        seed_everything(seed)  # as train_student does: the transformer part starts as the run's student did
        student, tokenizer, _ = build_student(params["student"], meta, train, max_length, teacher, teacher_tok)
        keys = [tuple(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        lookup = {k: i for i, k in enumerate(keys)}  # a text whose token ids another text also has: the later row
        student_params = sum(p.numel() for p in student.parameters())
        hook = attach(student, NgramHead(lookup, features, w * weight, w * bias))
        student.ngram_head.requires_grad_(train_head)
        train_set = Encoded(tokenizer, kd.texts, kd.targets, max_length)
        sets = {split: Encoded(tokenizer, t, None, max_length) for split, t in (("val", val), ("test", test))}
        loss_fn, extra, _ = build_kd(cfg, task, kd.soft, teacher=teacher, teacher_set=kd.teacher_set,
                                     student=student, student_set=train_set, class_weights=weights)
        start = time.perf_counter()
        result = fit(student, train_set, sets["val"], y_val, task=task, loss_fn=loss_fn, seed=seed, extra_modules=extra,
                     desc=f"{desc} {name}", **fit_options(cfg))
        probs = {split: probabilities(task, predict_logits(student, encoded)) for split, encoded in sets.items()}
        rows.append({"row": name, **scored(task, y_val, probs["val"], y_test, probs["test"]),
                     "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
                     "seconds": round(time.perf_counter() - start, 1), "ngram_features": int(weight.shape[0]),
                     "ngram_head_params": int(weight.size + bias.size), "student_params": student_params,
                     "texts_sharing_token_ids": len(keys) - len(lookup)})
        start = time.perf_counter()
        final = compressed(params, student, tokenizer, hook, splits, sets, run, f"{desc} {name}")
        rows.append({"row": final_name,
                     **scored(task, y_val, final["probs"]["val"], y_test, final["probs"]["test"]),
                     "sparsity": final["sparsity"], "transformer_onnx_bytes": final["transformer_bytes"],
                     "seconds": round(time.perf_counter() - start, 1)})
    return rows


def run_rows(run: Path) -> list[dict]:
    params, splits, base = load_run(run)
    (train, y_train), (val, y_val), (test, y_test) = splits["train"], splits["val"], splits["test"]
    task, seed = splits["task"], params["seed"]
    fitted = fit_tfidf_lr(task, train, y_train, seed=seed)  # the fit blend_tfidf makes: same texts, labels, seed
    rows = [{**base, "row": "tfidf_char", **scored(task, y_val, predict_proba(task, *fitted, val), y_test,
                                                    predict_proba(task, *fitted, test))}]
    loaded = load_model_dir(run / "models" / "teacher")  # loaded once: the targets row and the n-gram students
    teacher, tokenizer, _ = loaded
    max_length = params["data"]["max_length"]
    teacher_logits = [predict_logits(teacher, Encoded(tokenizer, t, None, max_length), desc=f"teacher {name}")
                      for name, t in (("val", val), ("test", test))]
    targets = blend_tfidf(task, params["distill"].get("tfidf_weight", 0.0), list(zip(teacher_logits, (val, test))),
                          train_texts=train, y_train=y_train, seed=seed)
    rows.append({**base, "row": "targets", **scored(task, y_val, probabilities(task, targets[0]), y_test,
                                                     probabilities(task, targets[1]))})
    student, tokenizer, _ = load_model_dir(run / "models" / "student")
    probs = [probabilities(task, predict_logits(student, Encoded(tokenizer, t, None, max_length))) for t in (val, test)]
    rows.append({**base, "row": "student", **scored(task, y_val, probs[0], y_test, probs[1])})
    record = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
    rows.append({**base, "row": "final", "val_macro_f1": read_json(run / "metrics" / "quantize.json")["val_macro_f1"],
                 "test_macro_f1": record["result"]["rows"]["final"]["macro_f1"], "from_run": True})
    rows += [{**base, **row} for row in ngram_students(params, splits, fitted, loaded, run, run.name)]
    for r in rows:
        print(f"[bench] {r}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    runs, out = parse_runs(__doc__, "bench/hybrid", ("params.yaml", RUN_FILE, "metrics/quantize.json", "models/teacher",
                                                     "models/student", "data/prepared", "data/pretrain_corpus.txt"))
    rows = [row for run in runs for row in run_rows(run)]
    result = {"command": "python -m bench.bench_hybrid " + " ".join(sys.argv[1:]), "machine": machine(), "rows": rows,
              "summary": summarize(rows, ROWS, "tfidf_char"),
              "summary_vs_student": summarize(rows, ("student", "final", *HEADS), "student"),
              "summary_vs_final": summarize(rows, ("final", *FINALS), "final")}
    title = "A student with the TF-IDF model's features"
    about = "`bench/bench_hybrid.py` for the rows"
    text = (render(result, title, about) + "\n## Against the run's own student\n\n"
            + render({**result, "summary": result["summary_vs_student"]}, title, about, "student")
            .split("\n", 4)[4] + "\n## Against the run's own final model\n\n"
            + render({**result, "summary": result["summary_vs_final"]}, title, about, "final").split("\n", 4)[4])
    Path(f"{out}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    Path(f"{out}.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
