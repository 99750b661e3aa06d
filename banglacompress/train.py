"""One training loop for every stage that trains (teacher, student, pruning fine-tune), run through
accelerate so the same stage runs on CPU, one GPU with mixed precision, or `accelerate launch`."""
from __future__ import annotations

import contextlib
import copy
import os
import random
import sys
import time
from typing import Callable

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from dvclive import Live
from scmrepo.exceptions import SCMError
from sklearn.model_selection import StratifiedKFold
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from .config import UserError, atomic_output, check_choice, check_range
from .data import Encoded, class_weights, load_split, make_loader, multilabel_fold_ids
from .models import build_model, count_params, save_model_dir
from .runtime import progress
from .scoring import classification_metrics, decide, macro_f1, probabilities, tune_thresholds

SCHEDULERS = {"linear": get_linear_schedule_with_warmup, "cosine": get_cosine_schedule_with_warmup}
# A group's `mixed_precision` param -> accelerate's name for it (YAML 1.1 reads a bare `no` as false, hence fp32)
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def configure_torch(threads: int) -> None:
    """The `threads` param: a fixed intra-op thread count (float sums are reduced in a thread-count-dependent
    order, so another count gives a slightly different model), and torch's deterministic algorithms where it
    has them (on CPU they cost nothing measurable; warn_only: an op without one warns instead of failing)."""
    check_range("threads", threads, 1, 1024)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- losses on labels
def _per_example(task, logits, labels, weights):
    if task == "multiclass":
        w = None if weights is None else weights.to(logits.device)
        return F.cross_entropy(logits, labels, weight=w, reduction="none")
    pos_weight = None if weights is None else weights.to(logits.device)
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=pos_weight, reduction="none")


def cross_entropy_loss(task, logits, labels, weights=None, **_):
    """BCE-with-logits (pos_weight) for binary and multi-label; weighted cross-entropy for multi-class."""
    if task == "multiclass":
        return F.cross_entropy(logits, labels, weight=None if weights is None else weights.to(logits.device))
    return _per_example(task, logits, labels, weights).mean()


def focal_loss(task, logits, labels, weights=None, gamma: float = 2.0):
    """Lin et al. (2017): down-weights easy examples by (1 - p_true)^gamma."""
    ce = _per_example(task, logits, labels, weights)
    if task == "multiclass":
        p_true = torch.softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
    else:
        p = torch.sigmoid(logits)
        y = labels.to(logits.dtype)
        p_true = p * y + (1 - p) * (1 - y)
    return ((1 - p_true) ** gamma * ce).mean()


# `bce` and `ce` are the predecessor's names; both mean "the right cross-entropy for the task".
LOSSES = {"auto": cross_entropy_loss, "bce": cross_entropy_loss, "ce": cross_entropy_loss, "focal": focal_loss}


def hard_loss(task: str, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
              loss: str = "auto", gamma: float = 2.0):
    """The supervised loss on labels, by name (see LOSSES)."""
    return LOSSES[loss](task, logits, labels, weights, gamma=gamma)


def label_loss(task: str, weights: torch.Tensor | None, loss: str = "auto", gamma: float = 2.0):
    """loss_fn(model, batch) for plain supervised training."""

    def loss_fn(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return hard_loss(task, logits, batch["labels"], weights, loss, gamma)

    return loss_fn


def freeze_base(model) -> None:
    """Feature extraction (baseline_v4): the encoder is frozen; only the classification head trains."""
    for p in getattr(model, model.base_model_prefix).parameters():
        p.requires_grad = False


# --------------------------------------------------------------------------- inference
@torch.no_grad()
def predict_logits(model, dataset: Encoded, batch_size: int = 64, desc: str = "predict") -> np.ndarray:
    """Logits in the dataset's order (batches are formed by length for speed, then put back)."""
    model.eval()
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
    out = [None] * len(dataset)
    for batch in progress(make_loader(dataset, batch_size, shuffle=False), desc=desc):
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits.float().cpu().numpy()
        for i, row in zip(batch["index"].tolist(), logits):
            out[i] = row
    return np.stack(out)


def score_split(model, tokenizer, info: dict, texts, y_true, max_length: int,
                desc: str = "score") -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics, decisions (with the model's own thresholds, tuned on val) and probabilities on any split."""
    probs = probabilities(info["task"], predict_logits(model, Encoded(tokenizer, texts, None, max_length), desc=desc))
    metrics = classification_metrics(info["task"], info["label_names"], y_true, probs, info.get("thresholds"))
    return metrics, decide(info["task"], probs, info.get("thresholds")), probs


# --------------------------------------------------------------------------- the loop
def report_launch(accelerator, desc: str) -> None:
    """Say how `accelerate launch` settings took effect: accelerate itself silently trains in FP32
    when fp16 is asked for on a CPU."""
    if accelerator.num_processes > 1:
        print(f"[{desc}] data-parallel over {accelerator.num_processes} processes ({accelerator.distributed_type}), "
              f"rank {accelerator.process_index}", file=sys.stderr)
    precision, device = accelerator.mixed_precision, accelerator.device.type
    if precision == "no":
        return
    if accelerator.native_amp:
        print(f"[{desc}] mixed precision {precision} (autocast on {device})", file=sys.stderr)
    else:
        print(f"[{desc}] warning: mixed precision {precision} is not available on {device}; training in FP32 "
              "(on CPU use --mixed_precision bf16)", file=sys.stderr)


def check_mixed_precision(name: str, value) -> None:
    if value is not None:
        check_choice(name, value, MIXED_PRECISION)


def make_accelerator(mixed_precision: str | None = None) -> Accelerator:
    """accelerate for one training loop. mixed_precision null: whatever `accelerate launch` (or its
    ACCELERATE_MIXED_PRECISION) says, FP32 under plain python; fp32 / bf16 / fp16: that, whatever the launcher
    says, so DVC hashes the choice with the params. accelerate keeps one precision per process, so a
    different one resets its state (the process group, held by PartialState, is kept)."""
    if mixed_precision is None:
        return Accelerator()
    wanted = MIXED_PRECISION[mixed_precision]
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != wanted:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=wanted)


def fit(model, train_set: Encoded, val_set: Encoded, val_targets: np.ndarray, *, task: str, loss_fn: Callable,
        epochs: int, batch_size: int, lr: float, weight_decay: float = 0.01, warmup_ratio: float = 0.1,
        grad_clip: float = 1.0, patience: int = 2, scheduler: str = "linear", seed: int = 42,
        extra_modules: tuple = (), after_step: Callable | None = None, live=None, desc: str = "train",
        select_best: bool = True, mixed_precision: str | None = None) -> dict:
    """AdamW + warm-up schedule + clipping; early stopping on validation macro-F1 that restores the
    best epoch. `loss_fn(model, batch)` returns the loss (labels, KD, ...); `after_step(model)` runs
    after every optimizer step (pruning masks). mixed_precision: make_accelerator's. Returns the history;
    `model` holds the best weights (FP32 under mixed precision too)."""
    seed_everything(seed)
    accelerator = make_accelerator(mixed_precision)
    trainable = [p for m in (model, *extra_modules) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    loader = make_loader(train_set, batch_size, shuffle=True, seed=seed)
    total = max(1, epochs * len(loader))
    schedule = SCHEDULERS[scheduler](optimizer, int(warmup_ratio * total), total)
    model, optimizer, loader, schedule, *extra = accelerator.prepare(model, optimizer, loader, schedule,
                                                                    *extra_modules)
    report_launch(accelerator, desc)
    best = {"macro_f1": -1.0, "epoch": -1, "state": None}
    history, stale = [], 0
    for epoch in range(epochs):
        model.train()
        for m in extra:
            m.train()
        start, losses = time.perf_counter(), []
        for batch in progress(loader, desc=f"{desc} epoch {epoch + 1}/{epochs}"):
            loss = loss_fn(model, batch)
            accelerator.backward(loss)
            if grad_clip:
                accelerator.clip_grad_norm_(trainable, grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if after_step is not None:
                after_step(accelerator.unwrap_model(model))
            losses.append(loss.item())
        unwrapped = accelerator.unwrap_model(model)
        val_logits = predict_logits(unwrapped, val_set, desc=f"{desc} val")
        val_f1 = macro_f1(task, val_targets, decide(task, probabilities(task, val_logits)))
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_macro_f1": val_f1,
               "seconds": time.perf_counter() - start}
        history.append(row)
        print(f"[{desc}] epoch {epoch + 1}/{epochs} loss {row['train_loss']:.4f} val macro-F1 {val_f1:.4f} "
              f"({row['seconds']:.0f}s)", file=sys.stderr)
        if live is not None:
            live.log_metric("train/loss", row["train_loss"])
            live.log_metric("val/macro_f1", val_f1)
            live.next_step()
        if val_f1 > best["macro_f1"]:
            best = {"macro_f1": val_f1, "epoch": epoch + 1, "state": copy.deepcopy(unwrapped.state_dict())}
            stale = 0
        else:
            stale += 1
            if patience and stale >= patience:
                print(f"[{desc}] early stop: no val macro-F1 gain for {patience} epochs", file=sys.stderr)
                break
    model = accelerator.unwrap_model(model)
    if select_best and best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return {"best_epoch": best["epoch"], "best_val_macro_f1": best["macro_f1"], "epochs_run": len(history),
            "history": history}


# --------------------------------------------------------------------------- shared stage steps
FIT_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "grad_clip", "patience", "scheduler",
            "mixed_precision")


def fit_options(cfg: dict, epochs_key: str = "epochs") -> dict:
    """The training knobs of a params group, with the group's own name for the epoch count."""
    opts = {k: cfg[k] for k in FIT_KEYS if k in cfg and k != "epochs"}
    opts["epochs"] = cfg[epochs_key]
    return opts


def check_fit_options(group: str, cfg: dict, epochs_key: str = "epochs") -> None:
    check_range(f"{group}.{epochs_key}", cfg[epochs_key], 0, 1000)
    check_range(f"{group}.lr", cfg["lr"], 1e-8, 1.0)
    check_range(f"{group}.batch_size", cfg["batch_size"], 1, 65536)
    if "scheduler" in cfg:
        check_choice(f"{group}.scheduler", cfg["scheduler"], SCHEDULERS)
    check_mixed_precision(f"{group}.mixed_precision", cfg.get("mixed_precision"))


def tune_thresholds_and_save(path, model, tokenizer, meta: dict, val_set: Encoded, y_val: np.ndarray,
                             max_length: int, extra: dict | None = None) -> dict:
    """Choose decision thresholds on validation (never on test) and save the model directory."""
    probs = probabilities(meta["task"], predict_logits(model, val_set, desc="val"))
    thresholds = tune_thresholds(meta["task"], y_val, probs)
    val_f1 = macro_f1(meta["task"], y_val, decide(meta["task"], probs, thresholds))
    info = {"task": meta["task"], "label_names": meta["label_names"], "thresholds": thresholds,
            "max_length": max_length, **(extra or {})}
    save_model_dir(path, model, tokenizer, info)
    return {"thresholds": thresholds, "val_macro_f1_tuned": val_f1}


def is_main_process() -> bool:
    """Rank 0 under torchrun / accelerate launch (RANK is set by both); always true for one process.
    Only rank 0 writes models, metrics and plots: the other ranks trained the same weights in lockstep."""
    return int(os.environ.get("RANK", "0")) == 0


def open_live(directory: str):
    """dvclive logger for one stage, in its own directory; dvc.yaml declares the plots (dvcyaml=False)."""
    if not is_main_process():
        return contextlib.nullcontext()
    try:
        return Live(directory, dvcyaml=False, save_dvc_exp=False)
    except SCMError as err:
        raise UserError(f"dvclive cannot read the git repository ({err}): make a first commit "
                        "(git add -A && git commit) before running the pipeline") from None


def fold_ids(task: str, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified fold id per training row (iterative stratification for multi-label)."""
    if task == "multilabel":
        return multilabel_fold_ids(y.astype(int), folds, seed)
    labels = y if task == "multiclass" else y[:, 0]
    ids = np.empty(len(y), dtype=int)
    for f, (_, held_out) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)):
        ids[held_out] = f
    return ids


def cross_validate(build: Callable, texts: list[str], y: np.ndarray, *, task: str, folds: int, seed: int,
                   max_length: int, make_loss: Callable, **fit_kwargs) -> dict:
    """k-fold CV inside the training split only: a report (mean ± std of held-out-fold macro-F1),
    not a selection; the final model is trained on the whole training split afterwards."""
    ids = fold_ids(task, y, folds, seed)
    scores = []
    for f in range(folds):
        train_rows, held_rows = np.flatnonzero(ids != f), np.flatnonzero(ids == f)
        model, tokenizer = build([texts[i] for i in train_rows])
        train_set = Encoded(tokenizer, [texts[i] for i in train_rows], y[train_rows], max_length)
        held_set = Encoded(tokenizer, [texts[i] for i in held_rows], None, max_length)
        result = fit(model, train_set, held_set, y[held_rows], task=task, loss_fn=make_loss(y[train_rows]),
                     seed=seed, desc=f"fold {f + 1}/{folds}", **fit_kwargs)
        scores.append(result["best_val_macro_f1"])
    return {"cv_folds": folds, "cv_macro_f1_mean": float(np.mean(scores)), "cv_macro_f1_std": float(np.std(scores)),
            "cv_macro_f1_per_fold": scores}


# --------------------------------------------------------------------------- the train_teacher stage
def check_teacher_params(cfg: dict) -> None:
    check_fit_options("teacher", cfg)
    check_choice("teacher.loss", cfg.get("loss", "auto"), LOSSES)
    check_range("teacher.cv_folds", cfg.get("cv_folds", 0), 0, 20)


def train_teacher(cfg: dict, *, prepared: str | Path, out_dir: str | Path, seed: int, max_length: int,
                  live_dir: str | Path | None = None, tokenizer=None) -> dict | None:
    """The train_teacher stage: build the teacher (scratch, hub id or path), optionally report k-fold CV
    on the train split, train with early stopping on val, tune thresholds on val and save it to out_dir.
    A scratch teacher trains its own tokenizer unless one is given (benchmarks that compare teachers on
    one tokenizer). Returns the stage's metrics (None on a non-zero data-parallel rank, which writes nothing)."""
    check_teacher_params(cfg)
    train_texts, y_train, meta = load_split(prepared, "train")
    val_texts, y_val, _ = load_split(prepared, "val")
    task = meta["task"]

    def build(texts):
        seed_everything(seed)
        model, tokenizer_ = build_model("teacher", cfg, meta, texts, max_length, tokenizer)
        if cfg.get("freeze_base", False):
            freeze_base(model)
        return model, tokenizer_

    def make_loss(y):
        weights = class_weights(y, task) if cfg.get("class_weights", True) else None
        return label_loss(task, weights, cfg.get("loss", "auto"), cfg.get("focal_gamma", 2.0))

    report = {}
    if cfg.get("cv_folds", 0) >= 2:
        report = cross_validate(build, train_texts, y_train, task=task, folds=cfg["cv_folds"], seed=seed,
                                max_length=max_length, make_loss=make_loss, **fit_options(cfg))
        print(f"[train_teacher] {cfg['cv_folds']}-fold CV macro-F1 {report['cv_macro_f1_mean']:.4f} "
              f"± {report['cv_macro_f1_std']:.4f}", file=sys.stderr)

    model, tokenizer = build(train_texts)
    train_set = Encoded(tokenizer, train_texts, y_train, max_length)
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    with (open_live(live_dir) if live_dir else contextlib.nullcontext()) as live:
        result = fit(model, train_set, val_set, y_val, task=task, loss_fn=make_loss(y_train), seed=seed, live=live,
                     desc="teacher", **fit_options(cfg))
    if not is_main_process():  # data-parallel run: rank 0 writes the outputs
        return None
    with atomic_output(out_dir) as out:
        result.update(tune_thresholds_and_save(out, model, tokenizer, meta, val_set, y_val, max_length))
    return {**report, **{k: v for k, v in result.items() if k != "history"}, **count_params(model)}
