"""Knowledge distillation: teacher sanity check, cached teacher logits, and KD losses behind a registry.

Every method trains the student on

    loss = (1 - alpha) * hard + alpha * soft_logit + hidden_weight * hidden + attention_weight * attention

where `hard` is the label loss, `soft_logit` the temperature-scaled logit loss against the teacher
(T^2 * KL; the Bernoulli form for binary and multi-label), `hidden` the masked MSE between projected
student hidden states and the mapped teacher layers, and `attention` the masked MSE (or KL) between
attention maps. `logit` uses the first two terms, `hidden` adds the hidden term, `attention` the
attention term, `multi_level` both."""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification

from .baseline import fit_tfidf_lr, predict_proba
from .config import atomic_output, by_task, check_choice, check_range, require, resolve_options
from .data import CORPUS_FILE, Encoded, class_weights, load_split, read_corpus
from .models import (PRUNED_SHAPES_KEY, build_model, build_scratch_with_tokenizer, check_arch, count_params,
                     encoder_blocks, load_model_dir, with_dropout)
from .pooling import POOLINGS, pooling_of, set_pooling
from .scoring import decide, logits_of, macro_f1, probabilities, tune_thresholds
from .train import (check_fit_options, fit, fit_options, hard_loss, is_main_process, open_live, predict_logits,
                    seed_everything, tune_thresholds_and_save)


# --------------------------------------------------------------------------- teacher check
def majority_baseline_f1(task: str, y_train: np.ndarray, y_val: np.ndarray) -> float:
    """Macro-F1 on validation of always predicting the training majority (per label)."""
    if task == "multiclass":
        majority = np.bincount(y_train).argmax()
        return macro_f1(task, y_val, np.full(len(y_val), majority))
    majority = (y_train.mean(axis=0) >= 0.5).astype(int)
    return macro_f1(task, y_val, np.tile(majority, (len(y_val), 1)))


def check_teacher(task: str, val_logits: np.ndarray, y_val: np.ndarray, y_train: np.ndarray,
                  thresholds, margin: float) -> dict:
    """Stop before distilling from a teacher that is no better than guessing the majority class
    (the predecessor silently distilled from chance-level teachers)."""
    teacher_f1 = macro_f1(task, y_val, decide(task, probabilities(task, val_logits), thresholds))
    baseline = majority_baseline_f1(task, y_train, y_val)
    require(teacher_f1 >= baseline + margin,
            f"the teacher's validation macro-F1 {teacher_f1:.4f} is not above the majority-class baseline "
            f"{baseline:.4f} + distill.min_teacher_margin {margin}: retrain the teacher (more epochs, another lr) "
            "before distilling from it; if it was fine-tuned from models/pretrained, check that the pretraining "
            "took off (metrics/pretrain.json, val_perplexity by epoch): an MLM that barely lowered it leaves an "
            "encoder the teacher cannot learn from (lower pretrain.lr or add pretrain.corpora)")
    return {"teacher_val_macro_f1": teacher_f1, "majority_val_macro_f1": baseline}


# --------------------------------------------------------------------------- soft logit losses
def soft_logit_loss(task: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher/T || student/T). Multi-class: softmax KL. Binary and multi-label: the
    Bernoulli KL of each sigmoid output (the sigmoid form), averaged over labels."""
    t = temperature
    s, te = student / t, teacher.to(student.dtype) / t
    if task == "multiclass":
        kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(te, dim=-1), log_target=True, reduction="batchmean")
    else:
        p = torch.sigmoid(te)
        kl = (p * (F.logsigmoid(te) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-te) - F.logsigmoid(-s))).mean()
    return kl * t * t


def mse_logit_loss(task: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.mse_loss(student, teacher.to(student.dtype))


SOFT_LOSSES = {"kl": soft_logit_loss, "mse": mse_logit_loss}


# --------------------------------------------------------------------------- layer maps and projections
def n_layers(model) -> int:
    return model.config.num_hidden_layers  # DistilBERT maps this name to n_layers


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Student block i (0-based) -> teacher block round((i + 1) * Lt / Ls) - 1: evenly spaced, and the
    student's last block always meets the teacher's last (the one the classifier reads)."""
    return [int(round((i + 1) * n_teacher / n_student)) - 1 for i in range(n_student)]


def resolve_layer_map(layer_map, n_student: int, n_teacher: int) -> list[int]:
    """distill.layer_map (null: uniform) checked against both depths."""
    if layer_map is None:
        return uniform_layer_map(n_student, n_teacher)
    ok = (isinstance(layer_map, (list, tuple)) and len(layer_map) == n_student
          and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < n_teacher for t in layer_map))
    require(ok, f"distill.layer_map={layer_map!r} must list one teacher block (0..{n_teacher - 1}) for each of the "
                f"student's {n_student} blocks (student block i -> teacher block layer_map[i]), or be null")
    return list(layer_map)


def make_projections(student, teacher, layer_map: list[int]) -> nn.ModuleList:
    """One learned Linear (student width -> teacher width) per matched layer, trained with the student;
    Identity where the widths agree. (The predecessor pooled the features instead: nothing learned.)"""
    ds, dt = student.config.hidden_size, teacher.config.hidden_size
    return nn.ModuleList(nn.Linear(ds, dt) if ds != dt else nn.Identity() for _ in layer_map)


# --------------------------------------------------------------------------- feature losses (padding masked)
def masked_hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over real tokens only: [B, T, D] pairs, mask [B, T]; the mean is over real tokens x D, so
    adding padding changes nothing."""
    m = mask.to(student.dtype).unsqueeze(-1)
    return ((student - teacher.to(student.dtype)) ** 2 * m).sum() / (m.sum() * student.shape[-1]).clamp_min(1.0)


def _pair_mask(mask: torch.Tensor, dtype) -> torch.Tensor:
    """[B, 1, T, T]: 1 where both the query and the key are real tokens."""
    m = mask.to(dtype)
    return m[:, None, :, None] * m[:, None, None, :]


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    pair = _pair_mask(mask, student.dtype)
    diff = (student - teacher) ** 2 * pair
    return diff.sum() / (pair.sum() * student.shape[1]).clamp_min(1.0)


def attention_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """KL(teacher row || student row) for every real query over its real keys, averaged over queries."""
    pair = _pair_mask(mask, student.dtype)
    kl_rows = (teacher * (teacher.clamp_min(eps).log() - student.clamp_min(eps).log()) * pair).sum(-1)
    queries = pair[..., 0]  # [B, 1, T]: the real query rows
    return (kl_rows * queries).sum() / (queries.sum() * student.shape[1]).clamp_min(1.0)


ATTENTION_LOSSES = {"mse": attention_mse, "kl": attention_kl}


def match_heads(student: torch.Tensor, teacher: torch.Tensor):
    """Maps are [B, H, T, T]; where head counts differ there is no head-to-head pairing, so both are
    averaged over heads."""
    if student.shape[1] != teacher.shape[1]:
        return student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    return student, teacher


# --------------------------------------------------------------------------- the teacher side of feature KD
@dataclass
class FeatureKD:
    """What hidden / attention KD needs besides the cached logits: the teacher, run per batch without
    gradients on ITS OWN token ids (rows looked up by index in `teacher_set`, the train texts encoded with
    the teacher's tokenizer), the layer map and the student->teacher projections."""
    teacher: nn.Module
    teacher_set: object
    layer_map: list[int]
    projections: nn.ModuleList
    attention_loss: str = "kl"

    @torch.no_grad()
    def teacher_outputs(self, batch: dict, device, hidden: bool, attentions: bool):
        tb = self.teacher_set.collate(batch["index"].tolist())
        mask = tb["attention_mask"].to(device)
        # Identical tokenization was checked up front; a differing mask here would misalign positions.
        require(torch.equal(mask, batch["attention_mask"].to(device)),
                "teacher and student token positions differ within a batch: feature KD needs one tokenization")
        if next(self.teacher.parameters()).device != torch.device(device):
            self.teacher.to(device)
        self.teacher.eval()
        return self.teacher(input_ids=tb["input_ids"].to(device), attention_mask=mask,
                            output_hidden_states=hidden, output_attentions=attentions)


def hidden_term(kd: FeatureKD, student_out, teacher_out, mask: torch.Tensor) -> torch.Tensor:
    """hidden_states[0] is the embedding output, so block i is at index i + 1 in both models."""
    losses = [masked_hidden_mse(proj(student_out.hidden_states[i + 1]), teacher_out.hidden_states[t + 1], mask)
              for i, (t, proj) in enumerate(zip(kd.layer_map, kd.projections))]
    return torch.stack(losses).mean()


def attention_term(kd: FeatureKD, student_out, teacher_out, mask: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of student block i vs teacher block layer_map[i] (eager attention)."""
    loss = ATTENTION_LOSSES[kd.attention_loss]
    losses = []
    for i, t in enumerate(kd.layer_map):
        s = student_out.attentions[i]
        losses.append(loss(*match_heads(s, teacher_out.attentions[t].to(s.dtype)), mask))
    return torch.stack(losses).mean()


FEATURE_TERMS = {"hidden": hidden_term, "attention": attention_term}


# --------------------------------------------------------------------------- KD methods (the registry)
def combined_kd(task: str, teacher_logits: torch.Tensor, *, alpha: float, temperature: float,
                class_weights: torch.Tensor | None = None, soft_loss: str = "kl", features: FeatureKD | None = None,
                weights: dict | None = None):
    """loss_fn(model, batch) for (1 - alpha) * hard + alpha * soft_logit + sum(weights[t] * term t).

    `teacher_logits` holds the teacher's logits for every training row, computed once with the
    teacher's own tokenizer; rows are looked up by the batch's `index`. Feature terms with weight 0
    are dropped, so they cost no teacher forward."""
    soft = SOFT_LOSSES[soft_loss]
    weights = {name: w for name, w in (weights or {}).items() if w}
    require(not weights or features is not None, "hidden / attention KD needs the teacher's features (FeatureKD)")

    def loss_fn(model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_hidden_states="hidden" in weights, output_attentions="attention" in weights)
        logits = out.logits
        loss = (1 - alpha) * hard_loss(task, logits, batch["labels"], class_weights) if alpha < 1 else 0.0
        if alpha > 0:
            target = teacher_logits[batch["index"].cpu()].to(logits.device)
            loss = loss + alpha * soft(task, logits, target, temperature)
        if weights:
            teacher_out = features.teacher_outputs(batch, logits.device, "hidden" in weights, "attention" in weights)
            mask = batch["attention_mask"]
            for name, w in weights.items():
                loss = loss + w * FEATURE_TERMS[name](features, out, teacher_out, mask)
        return loss

    return loss_fn


def logit_kd(task: str, teacher_logits: torch.Tensor, *, alpha: float, temperature: float,
             class_weights: torch.Tensor | None = None, soft_loss: str = "kl"):
    """loss = alpha * soft(student, teacher) + (1 - alpha) * hard(student, labels); works across tokenizers."""
    return combined_kd(task, teacher_logits, alpha=alpha, temperature=temperature, class_weights=class_weights,
                       soft_loss=soft_loss)


def hidden_kd(task, teacher_logits, *, features: FeatureKD, hidden_weight: float = 0.3, **logit_opts):
    """logit KD + hidden_weight * masked MSE(projection(student block i), teacher block layer_map[i])."""
    return combined_kd(task, teacher_logits, features=features, weights={"hidden": hidden_weight}, **logit_opts)


def attention_kd(task, teacher_logits, *, features: FeatureKD, attention_weight: float = 0.2, **logit_opts):
    """logit KD + attention_weight * masked MSE/KL between attention maps of the mapped blocks."""
    return combined_kd(task, teacher_logits, features=features, weights={"attention": attention_weight},
                       **logit_opts)


def multi_level_kd(task, teacher_logits, *, features: FeatureKD, hidden_weight: float = 0.3,
                   attention_weight: float = 0.2, **logit_opts):
    """logit + hidden + attention KD, each with its weight."""
    return combined_kd(task, teacher_logits, features=features,
                       weights={"hidden": hidden_weight, "attention": attention_weight}, **logit_opts)


@dataclass(frozen=True)
class KDMethod:
    """One KD method: its loss, the teacher features it reads per batch, and the distill.* options it takes
    besides alpha, temperature and soft_loss (which every method takes). Feature methods need eager
    attention where maps are read (sdpa returns none), one tokenization for teacher and student, and the
    teacher kept in memory; KD never changes the student's shapes (the student group sets them)."""
    loss: Callable                 # (task, teacher_logits, *, features=None, **common, **options) -> loss_fn
    features: tuple = ()           # "hidden", "attention": teacher outputs compared position by position
    options: dict = field(default_factory=dict)  # its own options, with defaults

    def resolve(self, name: str, given: dict) -> dict:
        return resolve_options("distill", name, self.options, given, "only alpha, temperature and soft_loss")


# KL by default: attention probabilities are ~1/T each, so their squared differences are ~1e-3 and an MSE
# term at attention_weight 0.2 carries almost no signal next to the label loss; a row KL is O(0.1-1).
DEFAULT_ATTENTION_LOSS = "kl"
KD_METHODS: dict[str, KDMethod] = {
    "logit": KDMethod(logit_kd),
    "hidden": KDMethod(hidden_kd, ("hidden",), {"hidden_weight": 0.3, "layer_map": None}),
    "attention": KDMethod(attention_kd, ("attention",),
                          {"attention_weight": 0.2, "attention_loss": DEFAULT_ATTENTION_LOSS, "layer_map": None}),
    "multi_level": KDMethod(multi_level_kd, ("hidden", "attention"),
                            {"hidden_weight": 0.3, "attention_weight": 0.2, "attention_loss": DEFAULT_ATTENTION_LOSS,
                             "layer_map": None}),
}
# The distill.* params that are method options, and how each is checked (layer_map: by resolve_layer_map).
OPTION_KEYS = tuple(sorted({key for method in KD_METHODS.values() for key in method.options}))


def method_options(cfg: dict) -> dict:
    """The method options of a `distill:` params group (null: the method's default)."""
    return {key: cfg.get(key) for key in OPTION_KEYS}


# --------------------------------------------------------------------------- tokenization check
def check_same_tokenization(method: str, teacher_ids: list, student_ids: list) -> None:
    """Hidden and attention KD compare the two models position by position, so both must see the very
    same tokens. (The predecessor fed one model's ids to the other and matched misaligned tokens.)"""
    differ = sum(a != b for a, b in zip(teacher_ids, student_ids)) + abs(len(teacher_ids) - len(student_ids))
    require(differ == 0,
            f"distill.method={method} matches hidden states / attention maps token by token, but the teacher's and "
            f"the student's tokenizers give different token ids on {differ} of {len(teacher_ids)} training texts. "
            "Use distill.method=logit (it works across tokenizers), or give the student the teacher's tokenizer "
            "(student.model: from_teacher, or student.tokenizer: teacher for a scratch student)")


# --------------------------------------------------------------------------- transfer set
def corpus_transfer(train_texts: list[str], corpus: str | Path) -> list[str]:
    """The pretraining corpus's texts that are not train texts: unlabelled, and already free of every val and
    test text (the pretrain_corpus stage removed their near-duplicates)."""
    texts = read_corpus(corpus)
    require(texts, f"distill.transfer=corpus, but {corpus} is empty: run the pretrain_corpus stage (`dvc repro "
                   "pretrain_corpus` builds it whenever distill.transfer is corpus; pretrain.corpora lists its "
                   "sources), or set distill.transfer: train")
    train = set(train_texts)
    return [t for t in texts if t not in train]


# The texts the student is distilled on: the labelled train split, plus (corpus) unlabelled in-domain text that
# only the teachers label, the classic KD transfer set. Unlabelled rows get a hard label (PSEUDO_LABELS), so
# every loss term applies to every row unchanged.
TRANSFER_SETS = {"train": lambda train_texts, corpus: [], "corpus": corpus_transfer}


def teacher_labels(task: str, logits: np.ndarray, thresholds, like: np.ndarray) -> np.ndarray:
    """The decisions of `logits` (with `thresholds`) on unlabelled rows, shaped and typed like the train targets."""
    return decide(task, probabilities(task, logits), thresholds).astype(like.dtype).reshape(-1, *like.shape[1:])


# The hard label of an unlabelled transfer row, from its logits on the transfer set and on val (the thresholds of
# those logits are tuned on val, as every threshold here is):
#   teacher: the teacher's own decision (its thresholds from train_teacher), whatever distill.tfidf_weight is;
#   targets: the decision of the soft targets the row is distilled on (the teacher blended with TF-IDF), so that
#            the hard and the soft term of a row agree. With tfidf_weight 0 the two are the same labels.
def teacher_decisions(task, *, teacher, teacher_thresholds, targets, targets_val, y_val):
    return teacher, teacher_thresholds


def target_decisions(task, *, teacher, teacher_thresholds, targets, targets_val, y_val):
    return targets, tune_thresholds(task, y_val, probabilities(task, targets_val))


PSEUDO_LABELS = {"teacher": teacher_decisions, "targets": target_decisions}


# --------------------------------------------------------------------------- params and setup
def blend_tfidf(task: str, weight: float, sets: list[tuple[np.ndarray, list[str]]], *, train_texts: list[str],
                y_train: np.ndarray, seed: int) -> list[np.ndarray]:
    """Soft targets from two teachers: for each (the teacher's logits, their texts) in `sets`, (1 - weight) * the
    teacher's logits + weight * the logits of the TF-IDF baseline (banglacompress.baseline: char 2-5-grams +
    logistic regression) on the same texts, from one fit. The regression is fitted on the train split's labels
    only, here, so no val or test text is seen. Char n-grams win where one word decides a label, the encoder
    elsewhere (bench/per_label_cyberbully.md); the student, which matches its teacher after KD on the transfer
    set, can learn from both. weight 0: the teacher's logits, untouched."""
    if weight == 0:
        return [logits for logits, _ in sets]
    vectorizer, model = fit_tfidf_lr(task, train_texts, y_train, seed=seed)
    blends = []
    for logits, texts in sets:
        tfidf = logits_of(task, predict_proba(task, vectorizer, model, texts))
        require(tfidf.shape == logits.shape, f"distill.tfidf_weight: the TF-IDF model gives {tfidf.shape[1]} "
                                             f"outputs, the teacher {logits.shape[1]}")
        blends.append(((1 - weight) * logits + weight * tfidf).astype(logits.dtype))
    return blends


# distill.alpha: auto, by task. On multi-label data the teacher is far below its blended soft targets (by 0.052 val
# macro-F1 on both sets' seed-42 runs, bench/target_gap_*), and its thresholded decisions, the unlabelled rows' hard
# labels, pull the student away from them.
# Soft targets only (1.0) against 0.7 raised the final model's val macro-F1 in all 12 paired runs of cyberbullying
# and toxic comments on three CPU types: +0.0089 +- 0.0048 and +0.0108 +- 0.0061 over 6 runs each. On hate speech
# (binary) it was noise, -0.0003 +- 0.0061 over 6, and on SentNoB (multi-class) +0.0017 +- 0.0132 over 3, so those
# keep 0.7 (bench/compare_alpha1_screens_3cpus.md; docs/experiments.md, "Soft targets only on multi-label data").
AUTO_ALPHA = {"multilabel": 1.0, "binary": 0.7, "multiclass": 0.7}


def check_distill_params(cfg: dict) -> None:
    check_choice("distill.method", cfg["method"], KD_METHODS)
    check_choice("distill.transfer", cfg.get("transfer", "train"), TRANSFER_SETS)
    check_choice("distill.pseudo_labels", cfg.get("pseudo_labels", "teacher"), PSEUDO_LABELS)
    check_choice("distill.soft_loss", cfg.get("soft_loss", "kl"), SOFT_LOSSES)
    check_range("distill.alpha", cfg["alpha"], 0.0, 1.0, allow_auto=True)
    check_range("distill.temperature", cfg["temperature"], 1e-3, 100.0)
    check_range("distill.tfidf_weight", cfg.get("tfidf_weight", 0.0), 0.0, 1.0)
    options = method_options(cfg)
    if options["attention_loss"] is not None:
        check_choice("distill.attention_loss", options["attention_loss"], ATTENTION_LOSSES)
    for key in ("hidden_weight", "attention_weight"):
        if options[key] is not None:
            check_range(f"distill.{key}", options[key], 0.0, 1e3)
    KD_METHODS[cfg["method"]].resolve(cfg["method"], options)


def kd_settings(cfg: dict) -> dict:
    """The KD knobs as recorded in metrics/distill.json: the common ones and the method's resolved options."""
    return {"method": cfg["method"], "alpha": cfg["alpha"], "temperature": cfg["temperature"],
            "soft_loss": cfg.get("soft_loss", "kl"), "tfidf_weight": cfg.get("tfidf_weight", 0.0),
            "pseudo_labels": cfg.get("pseudo_labels", "teacher"),
            **KD_METHODS[cfg["method"]].resolve(cfg["method"], method_options(cfg))}


def build_kd(cfg: dict, task: str, teacher_logits: torch.Tensor, *, teacher=None, teacher_set=None, student=None,
             student_set=None, class_weights=None):
    """The loss for distill.method, plus the extra modules fit() must train with the student
    (the projections) and what was resolved (layer map). Feature methods switch both models to eager
    attention where maps are needed (sdpa returns none) and check the tokenizations match."""
    method = KD_METHODS[cfg["method"]]
    cfg = {**cfg, "alpha": by_task(cfg["alpha"], AUTO_ALPHA, task)}  # auto: recorded as the number it stands for
    settings = kd_settings(cfg)
    common = dict(alpha=cfg["alpha"], temperature=cfg["temperature"], class_weights=class_weights,
                  soft_loss=settings["soft_loss"])
    options = {k: settings[k] for k in method.options if k not in ("layer_map", "attention_loss")}
    if not method.features:
        return method.loss(task, teacher_logits, **common, **options), (), settings
    check_same_tokenization(cfg["method"], teacher_set.input_ids, student_set.input_ids)
    if "attention" in method.features:
        for model in (teacher, student):
            model.set_attn_implementation("eager")
    teacher.requires_grad_(False)
    layer_map = resolve_layer_map(settings.get("layer_map"), n_layers(student), n_layers(teacher))
    # Attention maps are [T, T] whatever the width: only the hidden term needs projections.
    projections = (make_projections(student, teacher, layer_map) if "hidden" in method.features
                   else nn.ModuleList())
    features = FeatureKD(teacher, teacher_set, layer_map, projections,
                         settings.get("attention_loss", DEFAULT_ATTENTION_LOSS))
    extra = (projections,) if any(True for _ in projections.parameters()) else ()
    settings = {**settings, "layer_map": layer_map,
                "projection_params": sum(p.numel() for p in projections.parameters())}
    return method.loss(task, teacher_logits, features=features, **common, **options), extra, settings


# --------------------------------------------------------------------------- student starts
def copied_layers(n_teacher: int, n_student: int) -> list[int]:
    """Every k-th teacher block (k = Lt / Ls), starting at the first: 12 -> 6 gives 0, 2, 4, 6, 8, 10."""
    return [int(i * n_teacher / n_student) for i in range(n_student)]


def student_from_teacher(teacher, n_student: int | None = None, dropout: float = 0.1):
    """DistilBERT-style start: the teacher's config with fewer blocks and student.dropout, its embeddings,
    pooler and head copied, and block i initialised from teacher block copied_layers()[i].
    Returns (model, layers copied)."""
    n_teacher = n_layers(teacher)
    n_student = max(1, n_teacher // 2) if n_student is None else n_student
    require(isinstance(n_student, int) and 1 <= n_student <= n_teacher,
            f"student.from_teacher_layers={n_student!r} must be an integer in [1, {n_teacher}] (the teacher's depth)")
    require(not getattr(teacher.config, PRUNED_SHAPES_KEY, None),
            "student.model=from_teacher needs an unpruned teacher (its blocks have uneven shapes)")
    config = with_dropout(copy.deepcopy(teacher.config), dropout, "student")
    config.num_hidden_layers = n_student
    student = AutoModelForSequenceClassification.from_config(config)
    block_names = {n for n, _ in student.named_parameters() if ".layer." in n}
    shared = {k: v for k, v in teacher.state_dict().items() if k in student.state_dict() and k not in block_names}
    student.load_state_dict(shared, strict=False)
    layers = copied_layers(n_teacher, n_student)
    for block, t in zip(encoder_blocks(student), layers):
        block.load_state_dict(encoder_blocks(teacher)[t].state_dict())
    return student, layers


def build_student(cfg: dict, meta: dict, train_texts: list[str], max_length: int, teacher, teacher_tok):
    """student.model: "from_teacher" (shallower copy of the teacher, its tokenizer), "scratch" (own tokenizer,
    or the teacher's with student.tokenizer: teacher), or a hub id / local path. Returns (model, tokenizer, info)."""
    pooling = cfg.get("pooling", "teacher")
    check_choice("student.pooling", pooling, ("teacher", *POOLINGS))
    pooling = pooling_of(teacher) if pooling == "teacher" else pooling
    cfg = {**cfg, "pooling": pooling}
    source = cfg.get("model", "scratch")
    student, tokenizer, info = STUDENT_STARTS.get(source, _student_built)(cfg, meta, train_texts, max_length,
                                                                          teacher, teacher_tok)
    return set_pooling(student, pooling, "student.pooling"), tokenizer, {**info, "student_pooling": pooling}


def _student_from_teacher(cfg, meta, train_texts, max_length, teacher, teacher_tok):
    student, layers = student_from_teacher(teacher, cfg.get("from_teacher_layers"), cfg.get("dropout", 0.1))
    return student, copy.deepcopy(teacher_tok), {"student_start": "from_teacher", "copied_teacher_layers": layers}


def _student_built(cfg, meta, train_texts, max_length, teacher, teacher_tok):
    # Default "teacher": hidden / attention KD need one tokenization (an own tokenizer of another
    # vocabulary size splits words differently).
    tokenizer_source = cfg.get("tokenizer", "teacher")
    check_choice("student.tokenizer", tokenizer_source, ("own", "teacher"))
    if cfg.get("model", "scratch") == "scratch" and tokenizer_source == "teacher":
        check_arch("student", cfg.get("scratch") or {})
        model = build_scratch_with_tokenizer(cfg["scratch"], meta, teacher_tok, max_length, cfg.get("dropout", 0.1),
                                             "student")
        return model, copy.deepcopy(teacher_tok), {"student_start": "scratch", "student_tokenizer": "teacher"}
    model, tokenizer = build_model("student", cfg, meta, train_texts, max_length)
    return model, tokenizer, {"student_start": cfg.get("model", "scratch"), "student_tokenizer": "own"}


STUDENT_STARTS = {"from_teacher": _student_from_teacher}


# --------------------------------------------------------------------------- the distill stage
@dataclass
class KDTargets:
    """What the student is distilled on: the transfer texts (the train split first, then the unlabelled rows of
    distill.transfer), a hard label for each (labels, then PSEUDO_LABELS decisions), the soft-target logits of each
    (the teacher blended with TF-IDF), the teacher's own encoding of them (feature KD reads it), and the report."""
    texts: list[str]
    targets: np.ndarray
    soft: torch.Tensor
    teacher_set: Encoded
    report: dict


def kd_targets(cfg: dict, meta: dict, *, train: tuple[list[str], np.ndarray], val: tuple[list[str], np.ndarray],
               teacher, teacher_tok, teacher_info: dict, max_length: int, seed: int,
               corpus: str | Path = CORPUS_FILE) -> KDTargets:
    """Check the teacher against the majority baseline on val, then compute the soft targets once on the transfer
    set, with the teacher's own tokenizer (rows are matched to student batches by index)."""
    (train_texts, y_train), (val_texts, y_val) = train, val
    teacher_val = predict_logits(teacher, Encoded(teacher_tok, val_texts, None, max_length), desc="teacher val")
    report = check_teacher(meta["task"], teacher_val, y_val, y_train, teacher_info["thresholds"],
                           cfg.get("min_teacher_margin", 0.02))
    extra_texts = TRANSFER_SETS[cfg.get("transfer", "train")](train_texts, corpus)
    teacher_set = Encoded(teacher_tok, train_texts + extra_texts, None, max_length)
    teacher_logits = predict_logits(teacher, teacher_set, desc="teacher transfer set")
    # The soft targets on the transfer set, and on val for the thresholds of pseudo_labels=targets.
    soft, soft_val = blend_tfidf(meta["task"], cfg.get("tfidf_weight", 0.0),
                                 [(teacher_logits, train_texts + extra_texts), (teacher_val, val_texts)],
                                 train_texts=train_texts, y_train=y_train, seed=seed)
    # Hard labels of the unlabelled rows: decisions of the teacher's or the soft targets' logits (PSEUDO_LABELS),
    # each with thresholds that belong to those logits.
    unlabelled = slice(len(train_texts), None)
    logits, thresholds = PSEUDO_LABELS[cfg.get("pseudo_labels", "teacher")](
        meta["task"], teacher=teacher_logits[unlabelled], teacher_thresholds=teacher_info["thresholds"],
        targets=soft[unlabelled], targets_val=soft_val, y_val=y_val)
    targets = np.concatenate([y_train, teacher_labels(meta["task"], logits, thresholds, y_train)])
    report["transfer_rows"] = {"labelled": len(train_texts), "teacher_labelled": len(extra_texts)}
    return KDTargets(train_texts + extra_texts, targets, torch.from_numpy(soft), teacher_set, report)


def train_student(cfg: dict, student_cfg: dict, *, prepared: str | Path, teacher_dir: str | Path,
                  out_dir: str | Path, seed: int, max_length: int, live_dir: str | Path | None = None,
                  desc: str = "student", corpus: str | Path = CORPUS_FILE) -> dict | None:
    """The distill stage: the soft targets (kd_targets: the teacher checked on val, its logits on the transfer set,
    the train split plus with distill.transfer=corpus the unlabelled texts of `corpus`), then the student (student
    group) trained on labels and targets (distill group), thresholds tuned on val, saved to out_dir. Returns the
    stage's metrics (None on a non-zero data-parallel rank, which writes nothing)."""
    check_distill_params(cfg)
    check_fit_options("distill", cfg)
    method = KD_METHODS[cfg["method"]]
    train_texts, y_train, meta = load_split(prepared, "train")
    val_texts, y_val, _ = load_split(prepared, "val")
    # Attention maps need eager attention (sdpa returns none in transformers 5).
    teacher, teacher_tok, teacher_info = load_model_dir(
        teacher_dir, attn_implementation="eager" if "attention" in method.features else None)
    kd = kd_targets(cfg, meta, train=(train_texts, y_train), val=(val_texts, y_val), teacher=teacher,
                    teacher_tok=teacher_tok, teacher_info=teacher_info, max_length=max_length, seed=seed, corpus=corpus)

    seed_everything(seed)
    student, tokenizer, start = build_student(student_cfg, meta, train_texts, max_length, teacher, teacher_tok)
    train_set = Encoded(tokenizer, kd.texts, kd.targets, max_length)
    val_set = Encoded(tokenizer, val_texts, None, max_length)
    weights = class_weights(y_train, meta["task"]) if cfg.get("class_weights", True) else None
    loss_fn, extra, settings = build_kd(cfg, meta["task"], kd.soft, teacher=teacher, teacher_set=kd.teacher_set,
                                        student=student, student_set=train_set, class_weights=weights)
    del teacher  # the logit method is done with it; feature methods keep it inside loss_fn
    with open_live(live_dir) if live_dir else contextlib.nullcontext() as live:
        result = fit(student, train_set, val_set, y_val, task=meta["task"], loss_fn=loss_fn, seed=seed, live=live,
                     extra_modules=extra, desc=desc, **fit_options(cfg))
    if not is_main_process():  # data-parallel run: rank 0 writes the outputs
        return None
    with atomic_output(out_dir) as out:
        result.update(tune_thresholds_and_save(out, student, tokenizer, meta, val_set, y_val, max_length))
    return {**kd.report, **settings, **start, **{k: v for k, v in result.items() if k != "history"},
            **count_params(student)}
