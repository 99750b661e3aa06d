"""Self-supervised pretraining of the teacher's encoder (masked-language modelling with whole-word
masking) on in-domain unlabelled Bangla text: the train split plus extra corpora, never a val or test
text. Two stages: pretrain_corpus builds the de-duplicated text file (seconds), pretrain trains on it;
train_teacher then starts from the saved directory, and `models.load_pretrained` puts a fresh
classification head on it (docs/pretrain.md)."""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

from .config import UserError, atomic_output, check_range, require
from .data import Encoded, clean_text, dedup_key, make_loader, read_csv
from .integrity import write_checksums
from .models import check_arch, save_tokenizer, scratch_config, tokenizer_for, with_dropout
from .train import (SCHEDULERS, check_mixed_precision, is_main_process, make_accelerator, open_live, progress,
                    report_launch, seed_everything)

# The pretrain params group; a missing key takes this default, an unknown key is an error.
DEFAULTS = {"enabled": "auto", "corpora": [], "val_fraction": 0.02, "epochs": 8, "batch_size": 64,
            "lr": 1e-3, "warmup_ratio": 0.06, "weight_decay": 0.01, "mask_prob": 0.15, "whole_word": True,
            "max_texts": None, "mixed_precision": None, "min_context_gain": 1.5}
CORPUS_KEYS = ("path", "text_column")
GRAD_CLIP = 1.0
MISSING_CORPUS = ("it is listed in pretrain.corpora: `make data` puts the shared corpora under data/raw/, or remove "
                  "it from the list")
SKIPPED_FILE = "SKIPPED.json"
PRETRAINED_DIR = "models/pretrained"       # the pretrain stage's output, where train_teacher starts from


# --------------------------------------------------------------------------- params
def _check_int(name: str, value, low: int, high: int) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
            f"{name}={value!r} is out of range; it must be a whole number in [{low}, {high}]")


def check_pretrain_params(cfg: dict) -> dict:
    """Reject a bad `pretrain:` group before any work; returns it with defaults filled in."""
    require(isinstance(cfg, dict), "pretrain must be a mapping of options (see params.yaml)")
    unknown = sorted(set(cfg) - set(DEFAULTS))
    require(not unknown, f"pretrain.{unknown[0] if unknown else ''} is not a pretrain option; the options are: "
                         f"{', '.join(DEFAULTS)}")
    cfg = {**DEFAULTS, **cfg}
    require(isinstance(cfg["enabled"], bool) or cfg["enabled"] == "auto",
            f"pretrain.enabled={cfg['enabled']!r} must be auto (pretrain a scratch teacher, not a hub one), true "
            "or false")
    require(isinstance(cfg["whole_word"], bool), f"pretrain.whole_word={cfg['whole_word']!r} must be true or false")
    require(isinstance(cfg["corpora"], list), "pretrain.corpora must be a list of {path, text_column} entries")
    for i, entry in enumerate(cfg["corpora"]):
        require(isinstance(entry, dict) and sorted(entry) == sorted(CORPUS_KEYS)
                and all(isinstance(entry[k], str) and entry[k] for k in CORPUS_KEYS),
                f"pretrain.corpora[{i}]={entry!r} must have exactly the keys path and text_column (strings)")
    check_range("pretrain.val_fraction", cfg["val_fraction"], 0.001, 0.5)
    _check_int("pretrain.epochs", cfg["epochs"], 1, 1000)
    _check_int("pretrain.batch_size", cfg["batch_size"], 1, 65536)
    check_range("pretrain.lr", cfg["lr"], 1e-8, 1.0)
    check_range("pretrain.warmup_ratio", cfg["warmup_ratio"], 0.0, 1.0)
    check_range("pretrain.weight_decay", cfg["weight_decay"], 0.0, 1.0)
    check_range("pretrain.mask_prob", cfg["mask_prob"], 0.01, 0.9)
    if cfg["max_texts"] is not None:
        _check_int("pretrain.max_texts", cfg["max_texts"], 10, 10**9)
    check_mixed_precision("pretrain.mixed_precision", cfg["mixed_precision"])
    if cfg["min_context_gain"] is not None:
        check_range("pretrain.min_context_gain", cfg["min_context_gain"], 0.0, 1000.0)
    return cfg


def pretraining_applies(cfg: dict, teacher_cfg: dict) -> bool:
    """pretrain.enabled: true / false, or auto: pretrain a scratch teacher (it has never seen Bangla beyond
    the train split), not a hub teacher (already pretrained; `true` adapts it to the domain)."""
    enabled = check_pretrain_params(cfg)["enabled"]
    return teacher_cfg.get("model", "scratch") == "scratch" if enabled == "auto" else enabled


def corpus_readers(params: dict) -> list[str]:
    """The stages that read the pretraining corpus under these params: pretrain when pretraining applies, and
    distill with distill.transfer: corpus. With none, pretrain_corpus reads no corpus and writes an empty one."""
    readers = ["pretrain"] if pretraining_applies(params.get("pretrain", {}), params["teacher"]) else []
    return readers + (["distill"] if params.get("distill", {}).get("transfer", "train") == "corpus" else [])


def teacher_start(params: dict) -> dict:
    """The teacher params train_teacher trains with: teacher.model replaced by the pretrain stage's output
    when pretraining applies (its encoder and tokenizer), else the teacher group unchanged."""
    teacher = params["teacher"]
    if not pretraining_applies(params.get("pretrain", {}), teacher):
        return teacher
    require((Path(PRETRAINED_DIR) / "config.json").exists(),
            f"pretraining applies (pretrain.enabled: {params['pretrain'].get('enabled', 'auto')}, teacher.model: "
            f"{teacher.get('model', 'scratch')}), but {PRETRAINED_DIR} holds no pretrained model: run "
            "`dvc repro pretrain` first, or set pretrain.enabled=false")
    return {**teacher, "model": PRETRAINED_DIR}


# --------------------------------------------------------------------------- the corpus
def _corpus_texts(entry: dict) -> list[str]:
    df = read_csv(entry["path"], keep_empty=True, missing_hint=MISSING_CORPUS)
    require(entry["text_column"] in df.columns,
            f"{entry['path']} has no column {entry['text_column']!r}; its columns are {list(df.columns)} "
            "(set text_column of this entry in pretrain.corpora)")
    return df[entry["text_column"]].tolist()


def pretraining_corpus(train_texts: list[str], corpora: list[dict], exclude_texts: list[str]
                       ) -> tuple[list[str], dict]:
    """The train split's texts, then every corpus in order: cleaned (clean_text), empty ones dropped,
    every text whose near-duplicate key is that of an excluded text (the val and test splits) removed,
    then exact and near duplicates of a text kept before dropped. Returns the texts (first-seen order)
    and per source the counts rows_read = empty + eval_overlap + duplicates + kept."""
    excluded = {dedup_key(clean_text(t)) for t in exclude_texts}
    excluded.discard("")
    seen, texts, counts = set(), [], {}
    sources = [("train", list(train_texts))] + [(str(e["path"]), _corpus_texts(e)) for e in corpora]
    for name, raw in sources:
        row = {"rows_read": len(raw), "empty": 0, "eval_overlap": 0, "duplicates": 0, "kept": 0}
        for value in raw:
            text = clean_text(value) if isinstance(value, str) else ""
            key = dedup_key(text)
            outcome = ("empty" if not text else "eval_overlap" if key in excluded else
                       "duplicates" if key in seen else "kept")
            row[outcome] += 1
            if outcome == "kept":
                seen.add(key)
                texts.append(text)
        # a source listed twice (or the train split's own CSV) adds its counts to the same entry
        counts[name] = {k: counts.get(name, {}).get(k, 0) + v for k, v in row.items()}
    counts["total"] = {k: sum(c[k] for c in counts.values()) for k in row}
    return texts, counts


def corpus_summary(counts: dict) -> str:
    total = counts["total"]
    return (f"{total['kept']} texts kept of {total['rows_read']} rows ({total['eval_overlap']} val/test overlaps "
            f"removed, {total['duplicates']} duplicates, {total['empty']} empty)")


# --------------------------------------------------------------------------- masking
def word_starts(word_ids: list) -> list[bool]:
    """True for the first token of each word, from a fast tokenizer's `word_ids()` (None: special token).
    For this repo's SentencePiece tokenizer these are exactly the pieces that start with "▁" (its Metaspace
    pre-tokenizer splits at spaces; a test checks); for a WordPiece hub tokenizer, the tokens without "##"."""
    return [w is not None and (i == 0 or w != word_ids[i - 1]) for i, w in enumerate(word_ids)]


def mask_words(input_ids: torch.Tensor, starts: torch.Tensor, maskable: torch.Tensor, generator: torch.Generator,
               *, mask_id: int, random_ids: torch.Tensor, mask_prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-word masking of a batch [B, L]: each word (a start token and the tokens after it up to the next
    start) is chosen with probability mask_prob, and every maskable token of a chosen word is replaced by
    [MASK] (80%), a random non-special token (10%) or kept (10%). Labels are the original ids at chosen
    tokens and -100 elsewhere; tokens that are not maskable (special tokens, padding) are never chosen.
    Per-token masking is `starts = maskable`. If a batch would get no chosen token, the word with the lowest
    draw is chosen (an all -100 batch has a NaN loss). The draws depend only on the shape and the generator."""
    rows, length = input_ids.shape
    word_index = torch.cumsum(starts.long(), dim=1)  # tokens before the first start get 0 and are not maskable
    word_draw = torch.rand((rows, length + 1), generator=generator).gather(1, word_index)
    how = torch.rand((rows, length), generator=generator)
    replacement = random_ids[torch.randint(len(random_ids), (rows, length), generator=generator)]
    chosen = maskable & (word_draw < mask_prob)
    if maskable.any() and not chosen.any():
        row, col = divmod(int(torch.where(maskable, word_draw, 2.0).argmin()), length)
        chosen[row] = maskable[row] & (word_index[row] == word_index[row, col])
    labels = torch.where(chosen, input_ids, -100)
    inputs = torch.where(chosen & (how < 0.8), mask_id, input_ids)
    inputs = torch.where(chosen & (how >= 0.8) & (how < 0.9), replacement, inputs)
    return inputs, labels


class MaskedTexts(Encoded):
    """Token ids per text with, per token, whether it starts a word; batches add `word_starts` and
    `maskable` (not special, not padding). Length-bucketed through data.make_loader."""

    def __init__(self, tokenizer, texts: list[str], max_length: int):
        # Encoded's fields, filled from one tokenizer call that also gives the word ids
        encoding = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.input_ids, self.targets = encoding["input_ids"], None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.starts = [word_starts(encoding.word_ids(i)) for i in range(len(self.input_ids))]
        self.special_ids = torch.tensor(sorted(tokenizer.all_special_ids))

    def collate(self, indices: list[int]) -> dict:
        batch = super().collate(indices)
        starts = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
        for row, i in enumerate(indices):
            starts[row, : len(self.starts[i])] = torch.tensor(self.starts[i])
        batch["word_starts"] = starts
        batch["maskable"] = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], self.special_ids)
        return batch


# --------------------------------------------------------------------------- models
def scratch_mlm(arch: dict, tokenizer, max_length: int, dropout: float):
    """A `*ForMaskedLM` of the teacher's scratch architecture, on `tokenizer`."""
    check_arch("teacher", arch)
    return AutoModelForMaskedLM.from_config(scratch_config(arch, tokenizer, max_length, dropout))


def load_mlm(source: str, max_length: int, dropout: float = 0.1):
    """A hub id or local directory as a masked LM with its own tokenizer (domain-adaptive pretraining), with
    teacher.dropout."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForMaskedLM.from_pretrained(
            source, config=with_dropout(AutoConfig.from_pretrained(source), dropout, "teacher"))
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"cannot load model {source!r} for pretraining: {first} (offline? use a local path, or "
                        "pretrain.model: scratch)") from None
    require(getattr(tokenizer, "is_fast", False) and tokenizer.mask_token_id is not None,
            f"{source!r} has no fast tokenizer with a mask token; masked-LM pretraining needs both")
    tokenizer.model_max_length = max_length
    return model, tokenizer


def build_mlm(teacher_cfg: dict, texts: list[str], max_length: int):
    """(model, tokenizer, how the tokenizer was made) for teacher.model: scratch (teacher.scratch, with a
    tokenizer trained on `texts`), or a hub id / directory (domain-adaptive, its own tokenizer)."""
    source = teacher_cfg.get("model", "scratch")
    if source != "scratch":
        model, tokenizer = load_mlm(source, max_length, teacher_cfg.get("dropout", 0.1))
        return model, tokenizer, f"from {source}"
    require(isinstance(teacher_cfg.get("scratch"), dict),
            "teacher.model: scratch pretrains the teacher.scratch architecture, but teacher.scratch is missing")
    arch = teacher_cfg["scratch"]
    check_arch("teacher", arch)
    tokenizer = tokenizer_for(arch, texts, max_length)
    return scratch_mlm(arch, tokenizer, max_length, teacher_cfg.get("dropout", 0.1)), tokenizer, \
        "SentencePiece trained on the pretraining texts"


# --------------------------------------------------------------------------- the loop
def hold_out(texts: list[str], fraction: float, seed: int, max_texts: int | None) -> tuple[list[str], list[str]]:
    """(train, validation) texts: at most max_texts sampled, then `fraction` held out (at least one text),
    both seeded and in corpus order."""
    rng = np.random.default_rng(seed)
    rows = list(range(len(texts)))
    if max_texts is not None and max_texts < len(rows):
        rows = sorted(rng.choice(len(rows), max_texts, replace=False).tolist())
    require(len(rows) >= 2, f"the pretraining corpus has {len(rows)} text(s) after de-duplication; it needs at "
                            "least 2 (one for validation)")
    n_val = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    val = set(rng.choice(rows, n_val, replace=False).tolist())
    return [texts[i] for i in rows if i not in val], [texts[i] for i in rows if i in val]


def masking_for(cfg: dict, tokenizer, model) -> dict:
    """How _mlm_step masks: the pretrain group's whole_word and mask_prob, the [MASK] id, and the ids a
    chosen token may be replaced by (every non-special id the tokenizer and the embedding share)."""
    size = min(len(tokenizer), model.get_input_embeddings().num_embeddings)
    special = set(tokenizer.all_special_ids)
    return {"whole_word": cfg["whole_word"], "mask_prob": cfg["mask_prob"], "mask_id": tokenizer.mask_token_id,
            "random_ids": torch.tensor([i for i in range(size) if i not in special])}


# The masked-LM prediction head of each scratch family, applied to hidden states: computing the vocabulary
# logits only at the ~15% chosen tokens, not at every token, is the same loss for about a third less time
# (the 8000-way output layer costs about as much per token as two of the teacher's blocks).
MASKED_HEADS = {
    "bert": lambda m, h: m.cls(h),
    "electra": lambda m, h: m.generator_lm_head(m.generator_predictions(h)),
    "distilbert": lambda m, h: m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(h)))),
    "xlm-roberta": lambda m, h: m.lm_head(h),
    "roberta": lambda m, h: m.lm_head(h),
}


def mlm_loss(model, inputs: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the chosen tokens (labels != -100). For a model type in MASKED_HEADS the
    vocabulary logits are computed at the chosen tokens only; any other masked LM (a hub model), and a model
    wrapped for data-parallel training (its gradients are synchronised in the wrapper's forward), runs whole."""
    head = MASKED_HEADS.get(getattr(getattr(model, "config", None), "model_type", None))
    if head is None:
        return model(input_ids=inputs, attention_mask=attention_mask, labels=labels).loss
    hidden = model.base_model(input_ids=inputs, attention_mask=attention_mask)[0]
    chosen = labels != -100
    logits = head(model, hidden[chosen])
    return torch.nn.functional.cross_entropy(logits.float(), labels[chosen])


def _mlm_step(model, batch: dict, generator: torch.Generator, masking: dict, device) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """(mean loss over chosen tokens, the chosen tokens' ids) of one batch, masked on the CPU."""
    starts = batch["word_starts"] if masking["whole_word"] else batch["maskable"]
    inputs, labels = mask_words(batch["input_ids"], starts, batch["maskable"], generator, mask_id=masking["mask_id"],
                                random_ids=masking["random_ids"], mask_prob=masking["mask_prob"])
    loss = mlm_loss(model, inputs.to(device), batch["attention_mask"].to(device),
                    labels.to(device))
    return loss, labels[labels != -100]


def unigram_log_probs(dataset: MaskedTexts, size: int) -> torch.Tensor:
    """log p(id) of a model that ignores context: each id's share of the non-special tokens in `dataset`
    (the held-in texts), add-one smoothed over a vocabulary of at least `size` ids."""
    ids = torch.tensor([i for row in dataset.input_ids for i in row])
    counts = torch.bincount(ids[~torch.isin(ids, dataset.special_ids)], minlength=size).double() + 1
    return (counts / counts.sum()).log()


@torch.no_grad()
def validation_perplexity(model, loader, masking: dict, seed: int, device,
                          unigram: torch.Tensor) -> tuple[float, float]:
    """exp(mean loss per chosen token) on the held-out texts, with the same masks every epoch (a fixed
    generator and unshuffled batches), so epochs are compared on the same task; and the same for the
    context-free model `unigram` (unigram_log_probs) on the same chosen tokens, the level an MLM that
    learned nothing from context stalls at."""
    model.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    total, unigram_total, count = 0.0, 0.0, 0
    for batch in progress(loader, desc="pretrain val"):
        loss, chosen = _mlm_step(model, batch, generator, masking, device)
        total, count = total + loss.float().item() * len(chosen), count + len(chosen)
        unigram_total -= unigram[chosen].sum().item()
    return math.exp(total / max(count, 1)), math.exp(unigram_total / max(count, 1))


def check_took_off(perplexity: float, unigram: float, min_gain: float | None) -> None:
    """Stop, before anything is saved, on an MLM whose held-out perplexity is not min_gain times below the
    context-free model's: it stalled at word frequencies (as at pretrain.lr 0.001 on ~12k texts, or at
    pretrain.batch_size 32), and a teacher fine-tuned from it gets nothing from pretraining."""
    require(min_gain is None or unigram >= min_gain * perplexity,
            f"pretraining stalled: held-out perplexity {perplexity:.1f} against {unigram:.1f} for a model that "
            f"ignores context (each token's frequency), {unigram / perplexity:.2f}x lower where "
            f"pretrain.min_context_gain asks for {min_gain}x: the encoder learned little beyond word frequencies. "
            "Lower pretrain.lr (0.0005 took off where 0.001 stalled), keep pretrain.batch_size at 64 or more, or "
            "add pretrain.corpora; pretrain.min_context_gain: null turns this check off")


def pretrain_mlm(cfg: dict, *, texts: list[str], out_dir: str | Path, seed: int, max_length: int, teacher_cfg: dict,
                 live_dir: str | Path | None = None) -> dict | None:
    """Masked-LM pretraining on `texts` (pretraining_corpus's output): hold out pretrain.val_fraction of
    them for validation perplexity, build the model (teacher.model: scratch = teacher.scratch with a
    tokenizer trained on the held-in texts; else a hub id / directory with its own tokenizer), train with
    AdamW and linear warm-up / decay, and save the last epoch's model + tokenizer + SHA256SUMS to out_dir.
    Returns the metrics (no timings: they go to stderr, so the metrics file is byte-reproducible), or None
    on a non-zero data-parallel rank, which writes nothing."""
    cfg = check_pretrain_params(cfg)
    train_texts, val_texts = hold_out(texts, cfg["val_fraction"], seed, cfg["max_texts"])
    seed_everything(seed)
    model, tokenizer, tokenizer_source = build_mlm(teacher_cfg, train_texts, max_length)
    masking = masking_for(cfg, tokenizer, model)
    train_set, val_set = MaskedTexts(tokenizer, train_texts, max_length), MaskedTexts(tokenizer, val_texts, max_length)
    unigram = unigram_log_probs(train_set, len(tokenizer))
    loader = make_loader(train_set, cfg["batch_size"], shuffle=True, seed=seed)
    val_loader = make_loader(val_set, cfg["batch_size"], shuffle=False)

    accelerator = make_accelerator(cfg["mixed_precision"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    total = max(1, cfg["epochs"] * len(loader))
    schedule = SCHEDULERS["linear"](optimizer, int(cfg["warmup_ratio"] * total), total)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    report_launch(accelerator, "pretrain")
    generator = torch.Generator().manual_seed(seed)  # the training masks: a fresh draw for every batch
    history, tokens_seen = [], 0
    print(f"[pretrain] {len(train_texts)} texts, {len(val_texts)} held out; tokenizer: {tokenizer_source} "
          f"({len(tokenizer)} pieces)", file=sys.stderr)
    with (open_live(live_dir) if live_dir else contextlib.nullcontext()) as live:
        for epoch in range(cfg["epochs"]):
            model.train()
            start, loss_sum, chosen = time.perf_counter(), 0.0, 0
            for batch in progress(loader, desc=f"pretrain epoch {epoch + 1}/{cfg['epochs']}"):
                # mlm_loss calls the encoder and head directly, past the forward that accelerate.prepare
                # wraps in autocast, so mixed precision has to be switched on here
                with accelerator.autocast():
                    loss, chosen_ids = _mlm_step(model, batch, generator, masking, accelerator.device)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum, chosen = loss_sum + loss.item() * len(chosen_ids), chosen + len(chosen_ids)
                tokens_seen += int(batch["attention_mask"].sum())
            with accelerator.autocast():
                perplexity, unigram_perplexity = validation_perplexity(model, val_loader, masking, seed,
                                                                       accelerator.device, unigram)
            row = {"epoch": epoch + 1, "mlm_loss": loss_sum / max(chosen, 1), "val_perplexity": perplexity}
            history.append(row)
            seconds = time.perf_counter() - start
            print(f"[pretrain] epoch {epoch + 1}/{cfg['epochs']} mlm loss {row['mlm_loss']:.4f} val perplexity "
                  f"{row['val_perplexity']:.2f}, {unigram_perplexity / perplexity:.2f}x below context-free "
                  f"{unigram_perplexity:.1f} ({seconds:.0f}s)", file=sys.stderr)
            if live is not None:
                live.log_metric("train/mlm_loss", row["mlm_loss"])
                live.log_metric("val/perplexity", row["val_perplexity"])
                live.next_step()
    check_took_off(history[-1]["val_perplexity"], unigram_perplexity, cfg["min_context_gain"])
    if not is_main_process():
        return None
    model = accelerator.unwrap_model(model).eval()
    with atomic_output(out_dir) as out:
        model.save_pretrained(out)
        save_tokenizer(tokenizer, out)
        write_checksums(out)
    best = min(history, key=lambda r: r["val_perplexity"])
    return {"model": teacher_cfg.get("model", "scratch"), "tokenizer": tokenizer_source, "vocab_size": len(tokenizer),
            "texts_train": len(train_texts), "texts_val": len(val_texts), "epochs": cfg["epochs"],
            "tokens_seen": tokens_seen, "final_val_perplexity": history[-1]["val_perplexity"],
            "best_val_perplexity": best["val_perplexity"], "best_epoch": best["epoch"],
            "unigram_val_perplexity": unigram_perplexity,
            "context_gain": unigram_perplexity / history[-1]["val_perplexity"], "history": history}


def write_skipped(out_dir: str | Path, live_dir: str | Path, reason: str) -> dict:
    """No pretraining: a note in place of the model and the plots (DVC outputs must exist, and git keeps no
    empty directory), and the record the stage writes as its metrics. Nothing reads the note:
    train_teacher uses models/pretrained only when pretraining applies (teacher_start)."""
    record = {"skipped": True, "reason": reason}
    for path in (out_dir, live_dir):
        with atomic_output(path) as tmp:
            (tmp / SKIPPED_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
