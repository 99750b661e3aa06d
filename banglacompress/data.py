"""Reading, cleaning, de-duplicating and splitting labelled comments; batching them for training."""
from __future__ import annotations

import csv
import random
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit
from sklearn.model_selection import train_test_split

from .config import UserError, atomic_output, check_range, read_json, require, write_json
from .runtime import clean_text  # noqa: F401  (training and the deploy path clean the same way)

TASKS = ("binary", "multilabel", "multiclass")
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- reading and cleaning
def read_csv(path: str | Path, *, keep_empty: bool = False,
             missing_hint: str = "put your CSV there or set data.path in params.yaml "
                                 "(`make data` fetches the default HateSpeech.csv)") -> pd.DataFrame:
    """Every cell as a string; empty cells become NaN unless keep_empty (then ""). Unreadable files
    raise UserError with one line that says why."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: {missing_hint}")
    try:
        # utf-8-sig strips a BOM; strict decoding so a Latin-1/UTF-16 file is rejected, not garbled.
        return pd.read_csv(path, encoding="utf-8-sig", encoding_errors="strict", dtype=str, keep_default_na=False,
                           na_values=[] if keep_empty else [""])
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty: it needs a header row and at least one row") from None
    except (pd.errors.ParserError, csv.Error) as err:
        raise UserError(f"{path} is not a well-formed CSV: {str(err).strip().splitlines()[-1]}") from None


def _as_int_labels(series: pd.Series, column: str) -> pd.Series:
    values = pd.to_numeric(series.str.strip(), errors="coerce")
    bad = series[values.isna() | (values != values.round())]
    if len(bad):
        shown = ", ".join(repr(v) for v in bad.unique()[:5])
        raise UserError(f"label column {column!r} has non-integer values ({shown}) in {len(bad)} rows")
    return values.astype(int)


def infer_task(df: pd.DataFrame, label_columns: list[str], task: str = "auto") -> str:
    if task != "auto":
        return task
    if len(label_columns) > 1:
        return "multilabel"
    values = set(_as_int_labels(df[label_columns[0]], label_columns[0]).unique())
    if values <= {0, 1}:
        return "binary"
    if len(values) >= 3 and min(values) >= 0:
        return "multiclass"
    raise UserError(f"label column {label_columns[0]!r} has values {sorted(values)}: binary labels must be 0/1; "
                    "for a multi-class column set data.task: multiclass")


def _read_labelled_csv(path, text_column: str, label_columns: list[str], drop_empty: bool,
                       **read_options) -> tuple[pd.DataFrame, pd.Series, dict]:
    """The CSV with its columns checked, its cleaned texts, and counts; an empty text is an error unless
    drop_empty (then _label_frame leaves the row out)."""
    df = read_csv(path, **read_options)
    require(len(df) > 0, f"{path} has a header but no rows")
    missing = [c for c in [text_column, *label_columns] if c not in df.columns]
    require(not missing, f"{path} has no column(s) {missing}; its columns are {list(df.columns)} "
                         "(set data.text_column / data.label_columns in params.yaml)")
    for column in label_columns:
        empty = df[column].isna().sum()
        require(empty == 0, f"label column {column!r} is empty in {empty} rows of {path}")

    texts = df[text_column].fillna("").map(clean_text)
    empty_rows = np.flatnonzero(texts.eq("").to_numpy())
    stats = {"rows_read": len(df), "empty_texts_dropped": 0}
    if len(empty_rows):
        require(drop_empty, f"{len(empty_rows)} rows have an empty or NaN text (first at data row "
                            f"{empty_rows[0] + 1} of {path}); remove them or set data.drop_empty: true")
        stats["empty_texts_dropped"] = int(len(empty_rows))
    return df, texts, stats


def load_labelled(path, text_column: str, label_columns: list[str], task: str = "auto",
                  drop_empty: bool = False) -> tuple[pd.DataFrame, dict]:
    """Read the CSV, validate it and return (frame with `text` + label columns, meta)."""
    df, texts, stats = _read_labelled_csv(path, text_column, label_columns, drop_empty)
    out, meta = _label_frame(df, texts, label_columns, task)
    return out.reset_index(drop=True), {**meta, **stats}


def _label_frame(df: pd.DataFrame, texts: pd.Series, label_columns: list[str], task: str
                 ) -> tuple[pd.DataFrame, dict]:
    """(`text` + label columns without the empty-text rows, keeping df's index; meta). The task and the
    class ids come from all of df's rows together."""
    task = infer_task(df, label_columns, task)
    out = pd.DataFrame({"text": texts})
    if task == "multiclass":
        raw = df[label_columns[0]].str.strip()
        numeric = pd.to_numeric(raw, errors="coerce")
        classes = sorted(numeric.astype(int).unique()) if numeric.notna().all() else sorted(raw.unique())
        keys = numeric.astype(int) if numeric.notna().all() else raw
        out["label"] = keys.map({c: i for i, c in enumerate(classes)}).astype(int)
        label_names = [str(c) for c in classes]
        target_columns = ["label"]
    else:
        for column in label_columns:
            values = _as_int_labels(df[column], column)
            bad = sorted(set(values.unique()) - {0, 1})
            require(not bad, f"label column {column!r} has values {bad}; {task} labels must be 0/1")
            out[column] = values
        label_names = list(label_columns)
        target_columns = list(label_columns)
    meta = {"task": task, "label_names": label_names, "target_columns": target_columns,
            "num_labels": 1 if task == "binary" else len(label_names)}
    return out[out["text"] != ""], meta


def load_given_splits(cfg: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    """The files of data.split_files, under the directory data.path, each checked and cleaned as
    load_labelled does one CSV. The task and the class ids come from the three files together, so a class
    missing from one split keeps its id. Returns ({split: frame}, meta with rows_read etc. per split)."""
    root = Path(cfg["path"])
    require(root.is_dir(), f"data.split_files is set, so data.path must be the directory that holds the split "
                           f"files (DVC tracks data.path as the prepare stage's input); {root} is "
                           f"{'a file' if root.exists() else 'not there'}: e.g. data.path: data/raw")
    hint = "put the file there or fix data.split_files (`make data` fetches data/raw/sentnob_{train,val,test}.csv)"
    read = {name: _read_labelled_csv(root / cfg["split_files"][name], cfg["text_column"], cfg["label_columns"],
                                     cfg.get("drop_empty", False), missing_hint=hint) for name in SPLITS}
    df = pd.concat([read[name][0] for name in SPLITS], ignore_index=True)
    texts = pd.concat([read[name][1] for name in SPLITS], ignore_index=True)
    origin = np.repeat(SPLITS, [len(read[name][0]) for name in SPLITS])
    out, meta = _label_frame(df, texts, cfg["label_columns"], cfg.get("task", "auto"))
    origin = origin[out.index.to_numpy()]
    parts = {name: out[origin == name].reset_index(drop=True) for name in SPLITS}
    stats = {key: {name: read[name][2][key] for name in SPLITS} for key in ("rows_read", "empty_texts_dropped")}
    return parts, {**meta, **stats}


def near_duplicate_key(text: str) -> str:
    """Letters and combining marks only (Bangla vowel signs and the hasanta are marks), case-folded:
    "ভালো!!", "ভালো 😀" and "ভালো ১২" share a key. Such copies in train and test would let a model
    score on test by remembering a training comment."""
    return "".join(ch for ch in text.casefold() if unicodedata.category(ch)[0] in "LM")


def deduplicate(df: pd.DataFrame, target_columns: list[str], task: str,
                key: pd.Series | None = None) -> tuple[pd.DataFrame, dict]:
    """Keep one row per key (default: the exact text); the first text of a group stands for it.
    Conflicting labels: majority vote; a tie goes to the positive label (binary/multi-label: a missed
    hateful comment costs more than a false alarm) or, for multi-class, to the lowest class id."""
    keyed = df.assign(_key=(df["text"] if key is None else key).to_numpy())
    groups = keyed.groupby("_key", sort=False)
    sizes = groups.size()
    nunique = groups[target_columns].nunique().max(axis=1)
    if task == "multiclass":
        resolved = groups["label"].agg(lambda s: s.value_counts().sort_index().idxmax()).to_frame()
    else:
        resolved = (groups[target_columns].mean() >= 0.5).astype(int)
    resolved["text"] = groups["text"].first()
    out = resolved.reset_index(drop=True)[["text", *target_columns]]
    stats = {"duplicate_rows_removed": int(len(df) - len(out)),
             "duplicate_texts": int((sizes > 1).sum()),
             "conflicting_duplicate_texts": int((nunique > 1).sum())}
    return out, stats


def dedup_key(text: str) -> str:
    """near_duplicate_key, or the exact text when it has no letters at all (only emoji, digits): all
    emoji-only comments are not one comment. The key prepare splits by and pretrain_corpus filters with."""
    return near_duplicate_key(text) or text


def _near_keys(texts: pd.Series) -> pd.Series:
    return texts.map(dedup_key)


def deduplicate_near(df: pd.DataFrame, target_columns: list[str], task: str) -> tuple[pd.DataFrame, dict]:
    """Exact duplicates, then near-duplicates (_near_keys), both before splitting, so no text is in two
    splits in either form. Returns the rows and both counts."""
    df, exact = deduplicate(df, target_columns, task)
    df, near = deduplicate(df, target_columns, task, _near_keys(df["text"]))
    return df, {**exact, **{f"near_{k}": v for k, v in near.items()}}


def remove_cross_split_twins(splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict]:
    """Given splits (data.split_files) can share texts. A row whose near-duplicate key is in a later split
    is dropped: train loses what is in val or test, val what is in test, and test stays whole (it is the
    benchmark others report on). Returns the splits and the counts: cross_split_<a>_rows_in_<b> (rows of
    split a whose key is in split b; a train row can be in both val and test) and
    cross_split_<a>_rows_removed."""
    keys = {name: _near_keys(part["text"]) for name, part in splits.items()}
    out, counts = dict(splits), {}
    for i, name in enumerate(SPLITS[:-1]):
        leaked = np.zeros(len(splits[name]), dtype=bool)
        for later in SPLITS[i + 1:]:
            in_later = keys[name].isin(set(keys[later])).to_numpy()
            counts[f"cross_split_{name}_rows_in_{later}"] = int(in_later.sum())
            leaked |= in_later
        counts[f"cross_split_{name}_rows_removed"] = int(leaked.sum())
        out[name] = splits[name][~leaked].reset_index(drop=True)
    return out, counts


# --------------------------------------------------------------------------- splitting
def _check_stratifiable(y: np.ndarray, names: list[str], min_count: int) -> None:
    for j, name in enumerate(names):
        count = int(y[:, j].sum())
        require(count >= min_count and len(y) - count >= min_count,
                f"label {name!r} has {count} positive and {len(y) - count} negative rows; at least {min_count} "
                "of each are needed to stratify into train/val/test (add data, drop the label, or raise "
                "data.val_size/data.test_size)")


def multilabel_holdout(y: np.ndarray, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, held-out rows) of multi-label y, iteratively stratified (Sechidis et al. 2011, through
    the iterative-stratification package) so that every label keeps its share in both parts."""
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=held_out, random_state=seed)
    kept, held = next(splitter.split(np.zeros(len(y)), y))
    return np.sort(kept), np.sort(held)


def multilabel_fold_ids(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold id per row for k-fold CV of multi-label y (iterative stratification)."""
    ids = np.empty(len(y), dtype=int)
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for f, (_, held) in enumerate(splitter.split(np.zeros(len(y)), y)):
        ids[held] = f
    return ids


def split(df: pd.DataFrame, meta: dict, val_size: float, test_size: float, seed: int) -> dict[str, pd.DataFrame]:
    task, targets = meta["task"], meta["target_columns"]
    min_count = int(np.ceil(1 / min(val_size, test_size)))
    if task == "multiclass":
        onehot = np.eye(len(meta["label_names"]), dtype=int)[df["label"].to_numpy()]
        for j, name in enumerate(meta["label_names"]):
            require(onehot[:, j].sum() >= min_count,
                    f"class {name!r} has {onehot[:, j].sum()} rows; at least {min_count} are needed to stratify "
                    "into train/val/test (add data or merge the class)")
    else:
        _check_stratifiable(df[targets].to_numpy(), meta["label_names"], min_count)
    if task == "multilabel":
        y = df[targets].to_numpy()
        train_rows, rest_rows = multilabel_holdout(y, val_size + test_size, seed)
        val_rows, test_rows = multilabel_holdout(y[rest_rows], test_size / (val_size + test_size), seed)
        parts = [df.iloc[train_rows], df.iloc[rest_rows[val_rows]], df.iloc[rest_rows[test_rows]]]
    else:
        strat = df[targets[0]]
        train, rest = train_test_split(df, test_size=val_size + test_size, stratify=strat, random_state=seed)
        val, test = train_test_split(rest, test_size=test_size / (val_size + test_size),
                                     stratify=rest[targets[0]], random_state=seed)
        parts = [train, val, test]
    return {name: part.reset_index(drop=True) for name, part in zip(SPLITS, parts)}


def split_metrics(splits: dict[str, pd.DataFrame], meta: dict) -> dict:
    out = {}
    for name, part in splits.items():
        row = {"rows": len(part)}
        if meta["task"] == "multiclass":
            counts = part["label"].value_counts()
            row.update({f"label_{n}": int(counts.get(i, 0)) for i, n in enumerate(meta["label_names"])})
        else:
            row.update({f"positive_{c}": int(part[c].sum()) for c in meta["target_columns"]})
        out[name] = row
    return out


# params.yaml's values of the options that only a split made here uses: with data.split_files set,
# another value is an error (an option that does not apply is never silently ignored).
RANDOM_SPLIT_DEFAULTS = {"val_size": 0.1, "test_size": 0.1, "fraction": 1.0, "split_seed": None}


def check_data_params(cfg: dict) -> None:
    """Reject bad `data:` params before any work."""
    require(cfg.get("task", "auto") in ("auto", *TASKS),
            f"data.task={cfg.get('task')!r} is not one of auto, {', '.join(TASKS)}")
    require(isinstance(cfg["label_columns"], list) and cfg["label_columns"],
            "data.label_columns must be a non-empty list of column names")
    given = cfg.get("split_files")
    if given is not None:
        require(isinstance(given, dict) and sorted(given) == sorted(SPLITS)
                and all(isinstance(v, str) and v for v in given.values()),
                f"data.split_files={given!r} must be null or {{train: FILE, val: FILE, test: FILE}} "
                "(paths inside the directory data.path)")
        for name, file in given.items():
            require(not Path(file).is_absolute() and ".." not in Path(file).parts,
                    f"data.split_files.{name}={file!r} must be a path inside the directory data.path "
                    "(so that DVC, which tracks data.path, sees it change)")
        require(len(set(given.values())) == len(SPLITS), f"data.split_files={given!r} names a file twice")
        for key, default in RANDOM_SPLIT_DEFAULTS.items():
            value = cfg.get(key, default)
            require(value == default, f"data.{key}={value!r} does not apply when data.split_files gives the "
                                      f"splits; set it back to {'null' if default is None else default}")
        return
    check_range("data.val_size", cfg["val_size"], 0.01, 0.5)
    check_range("data.test_size", cfg["test_size"], 0.01, 0.5)
    check_range("data.fraction", cfg.get("fraction", 1.0), 0.001, 1.0)
    if cfg.get("split_seed") is not None:
        check_range("data.split_seed", cfg["split_seed"], 0, 2**32 - 1)


DEDUP_RULE = ("exact text after NFC + whitespace clean-up, then near-duplicates (same letters and combining marks, "
              "case-folded: punctuation, spaces, digits and emoji ignored); majority vote, ties to positive "
              "(multi-class: lowest class id)")
CROSS_SPLIT_RULE = ("given splits: the de-duplication within each split, then a row whose near-duplicate key is in "
                    "a later split is removed (train: in val or test; val: in test); test is never changed")


def prepare_splits(cfg: dict, seed: int, out_dir: str | Path) -> dict:
    """The prepare stage: read and clean the CSV, de-duplicate (exact and near), sample data.fraction, split stratified, and
    write {train,val,test}.csv + meta.json to out_dir (atomically: the caller passes a temporary dir).
    The rows and the split follow data.split_seed, or `seed` when it is null (so the seed-noise benchmark
    can hold the split fixed while the seed changes initialisation and batch order).
    With data.split_files the splits are given instead (_prepare_given_splits).
    Returns the data metrics (task, de-duplication counts, rows and positives per split)."""
    check_data_params(cfg)
    if cfg.get("split_files") is not None:
        return _prepare_given_splits(cfg, out_dir)
    seed = seed if cfg.get("split_seed") is None else cfg["split_seed"]
    df, meta = load_labelled(cfg["path"], cfg["text_column"], cfg["label_columns"], cfg.get("task", "auto"),
                             cfg.get("drop_empty", False))
    df, dedup = deduplicate_near(df, meta["target_columns"], meta["task"])
    if cfg.get("fraction", 1.0) < 1.0:
        df = df.sample(frac=cfg["fraction"], random_state=seed).reset_index(drop=True)
    splits = split(df, meta, cfg["val_size"], cfg["test_size"], seed)
    meta.update(dedup, text_column=cfg["text_column"], label_columns=cfg["label_columns"],
                rows={k: len(v) for k, v in splits.items()}, dedup_rule=DEDUP_RULE)
    _write_prepared(out_dir, splits, meta)
    return {"task": meta["task"], **dedup,
            "splits": split_metrics(splits, meta)}


def _write_prepared(out_dir: str | Path, splits: dict[str, pd.DataFrame], meta: dict) -> None:
    out_dir = Path(out_dir)
    for name, part in splits.items():
        part.to_csv(out_dir / f"{name}.csv", index=False, encoding="utf-8")
    write_json(out_dir / "meta.json", meta)


def _prepare_given_splits(cfg: dict, out_dir: str | Path) -> dict:
    """prepare_splits for data.split_files: the same cleaning, task and class ids (from the three files
    together) and de-duplication rule within each split, then remove_cross_split_twins. Nothing is sampled
    or re-split. The de-duplication counts are summed over the splits (per split under `splits`)."""
    parts, meta = load_given_splits(cfg)
    per_split = {}
    for name in SPLITS:
        parts[name], per_split[name] = deduplicate_near(parts[name], meta["target_columns"], meta["task"])
    dedup = {key: sum(counts[key] for counts in per_split.values()) for key in per_split["train"]}
    parts, cross = remove_cross_split_twins(parts)
    for name, part in parts.items():
        require(len(part) > 0, f"the {name} split is empty after de-duplication and leakage removal "
                               f"(data.split_files.{name}={cfg['split_files'][name]!r})")
    meta.update(dedup, **cross, text_column=cfg["text_column"], label_columns=cfg["label_columns"],
                split_files=cfg["split_files"], rows={k: len(v) for k, v in parts.items()}, dedup_rule=DEDUP_RULE,
                cross_split_rule=CROSS_SPLIT_RULE)
    _write_prepared(out_dir, parts, meta)
    splits = split_metrics(parts, meta)
    # Every row read is accounted for: rows_read = rows + empty_texts_dropped + duplicate_rows_removed
    # + near_duplicate_rows_removed (+ cross_split_<split>_rows_removed for train and val).
    for name in SPLITS:
        splits[name].update(rows_read=meta["rows_read"][name], empty_texts_dropped=meta["empty_texts_dropped"][name],
                            **per_split[name])
    return {"task": meta["task"], "split_files": cfg["split_files"], **dedup, **cross, "splits": splits}


# --------------------------------------------------------------------------- loading prepared splits
def load_split(prepared_dir: str | Path, name: str) -> tuple[list[str], np.ndarray, dict]:
    """Texts, targets (float [n, L] for binary/multi-label, int [n] for multi-class) and meta."""
    prepared_dir = Path(prepared_dir)
    meta = read_json(prepared_dir / "meta.json")
    path = prepared_dir / f"{name}.csv"
    require(path.exists(), f"{path} not found: run the prepare stage first (dvc repro prepare)")
    df = pd.read_csv(path, encoding="utf-8", dtype={"text": str}, keep_default_na=False)
    return df["text"].tolist(), targets_of(df, meta), meta


def targets_of(df: pd.DataFrame, meta: dict) -> np.ndarray:
    if meta["task"] == "multiclass":
        return df["label"].to_numpy(dtype=np.int64)
    return df[meta["target_columns"]].to_numpy(dtype=np.float32)


def class_weights(y: np.ndarray, task: str) -> torch.Tensor:
    """pos_weight (neg/pos per label) for the sigmoid tasks; inverse frequency for multi-class."""
    if task == "multiclass":
        counts = np.bincount(y, minlength=int(y.max()) + 1).astype(float)
        return torch.tensor(len(y) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
    pos = y.sum(axis=0)
    return torch.tensor((len(y) - pos) / np.maximum(pos, 1), dtype=torch.float32)


# --------------------------------------------------------------------------- batching
class Encoded(torch.utils.data.Dataset):
    """Token ids per text (no padding), its target, and its index (to look up cached teacher logits)."""

    def __init__(self, tokenizer, texts: list[str], targets: np.ndarray | None, max_length: int):
        self.input_ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        self.targets = targets
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, i):
        return i

    def collate(self, indices: list[int]) -> dict:
        """Dynamic padding: pad to the longest sequence in this batch only."""
        longest = max(len(self.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), longest), dtype=torch.long)
        for row, i in enumerate(indices):
            seq = self.input_ids[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "index": torch.tensor(indices)}
        if self.targets is not None:
            batch["labels"] = torch.as_tensor(self.targets[indices])
        return batch


class LengthBucketSampler(torch.utils.data.Sampler):
    """Shuffled batches of similar-length sequences: little padding, still random order per epoch."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0, bucket: int = 50):
        self.lengths, self.batch_size, self.shuffle, self.seed, self.bucket = lengths, batch_size, shuffle, seed, bucket
        self.epoch = 0

    def __iter__(self):
        order = list(range(len(self.lengths)))
        if not self.shuffle:
            order.sort(key=lambda i: self.lengths[i])
            yield from (order[i: i + self.batch_size] for i in range(0, len(order), self.batch_size))
            return
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        rng.shuffle(order)
        chunk = self.batch_size * self.bucket
        batches = []
        for start in range(0, len(order), chunk):
            block = sorted(order[start: start + chunk], key=lambda i: self.lengths[i])
            batches += [block[i: i + self.batch_size] for i in range(0, len(block), self.batch_size)]
        rng.shuffle(batches)
        yield from batches

    def __len__(self):
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def make_loader(dataset: Encoded, batch_size: int, shuffle: bool, seed: int = 0):
    sampler = LengthBucketSampler([len(x) for x in dataset.input_ids], batch_size, shuffle, seed)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate)


def sample_batches(tokenizer, texts: list[str], targets, n: int, batch_size: int, max_length: int,
                   seed: int) -> list[dict]:
    """`n` random rows (with their targets, if given), tokenized with the given model's own tokenizer and
    dynamically padded: the calibration data of pruning (activation norms, gradients) and static
    quantization (activation ranges)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(texts), min(n, len(texts)), replace=False))
    dataset = Encoded(tokenizer, [texts[i] for i in rows], None if targets is None else targets[rows], max_length)
    return list(make_loader(dataset, batch_size, shuffle=False))


# --------------------------------------------------------------------------- the unlabelled corpus
CORPUS_FILE = "data/pretrain_corpus.txt"   # the pretrain_corpus stage's output: one cleaned text per line


def write_corpus(texts: list[str], path: str | Path = CORPUS_FILE) -> None:
    """One text per line, UTF-8 (clean_text collapsed every whitespace run, so no text holds a newline)."""
    require(not any("\n" in t for t in texts), "a pretraining text holds a newline; texts must be clean_text'ed")
    with atomic_output(path, is_dir=False) as tmp:
        tmp.write_text("".join(t + "\n" for t in texts), encoding="utf-8")


def read_corpus(path: str | Path = CORPUS_FILE) -> list[str]:
    path = Path(path)
    require(path.exists(), f"{path} not found: the pretrain_corpus stage writes it (dvc repro pretrain_corpus)")
    text = path.read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text else []
