"""Other KD transfer sets for a screen (not a test, not a stage): a corpus file that `bench.bench_frontier
--corpus` distils on instead of the run's data/pretrain_corpus.txt. The student is taught on the labelled
train split plus the corpus's texts, which only the teachers label (distill.transfer: corpus), so a larger
or noisier transfer set asks whether the small student is short of examples of what the teachers do, TF-IDF's
character n-grams above all (its soft targets are 70% TF-IDF's).

    --add CSV=COLUMN   more unlabelled text, after the run's pretrain.corpora (same cleaning and filtering)
    --augment N        N perturbed copies of every text (TinyBERT-style augmentation): each word dropped
                       with probability --drop, and one character of a word (3+ characters) deleted with
                       probability --typo, like the misspellings character n-grams match

Every text, real or perturbed, whose near-duplicate key (banglacompress.data.dedup_key) is a val or test
text's is removed, and duplicates of a text kept before are dropped: the rule and key of pretrain_corpus
(banglacompress.pretrain.pretraining_corpus, which builds the real texts here). Perturbed copies are filtered
by unique_new with that key but not cleaned again (no NFC pass after a deletion): calling pretraining_corpus on
them would re-normalise a few (150 of the 61,134 lines of the committed aug1 screen's corpus). Run it in a bench work dir:

    cd bench/work/cyberbully/seed42 && PYTHONPATH=/work/main python -m bench.transfer_corpus \\
        --augment 1 --out data/transfer_aug1.txt

Writes OUT and OUT's counts beside it (OUT with .json)."""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from banglacompress.config import load_params
from banglacompress.data import clean_text, dedup_key, load_split, write_corpus
from banglacompress.pretrain import check_pretrain_params, pretraining_corpus


def perturb(text: str, rng: random.Random, drop: float = 0.1, typo: float = 0.1) -> str:
    """One noisy copy of a cleaned text: words dropped (at least one kept) and one-character deletions."""
    words = text.split(" ")
    kept = [w for w in words if rng.random() >= drop] or [rng.choice(words)]
    out = []
    for word in kept:
        if len(word) >= 3 and rng.random() < typo:
            i = rng.randrange(len(word))
            word = word[:i] + word[i + 1:]
        out.append(word)
    return " ".join(out)


def unique_new(texts: list[str], excluded: set[str], seen: set[str]) -> tuple[list[str], dict]:
    """The texts whose key is neither excluded (val/test) nor seen, first-seen order; `seen` grows."""
    counts = {"rows_read": len(texts), "eval_overlap": 0, "duplicates": 0, "kept": 0}
    out = []
    for text in texts:
        key = dedup_key(text)
        outcome = "eval_overlap" if key in excluded else "duplicates" if key in seen or not text else "kept"
        counts[outcome] += 1
        if outcome == "kept":
            seen.add(key)
            out.append(text)
    return out, counts


def build(params: dict, prepared: str, add: list[dict], augment: int, drop: float, typo: float, seed: int
          ) -> tuple[list[str], dict]:
    cfg = check_pretrain_params(params.get("pretrain", {}))
    train, val, test = (load_split(prepared, s)[0] for s in ("train", "val", "test"))
    texts, counts = pretraining_corpus(train, cfg["corpora"] + add, exclude_texts=val + test)
    excluded = {dedup_key(clean_text(t)) for t in val + test} - {""}
    seen = {dedup_key(t) for t in texts}
    rng = random.Random(seed)
    for copy in range(augment):
        noisy, counts[f"augment_{copy + 1}"] = unique_new([perturb(t, rng, drop, typo) for t in texts], excluded, seen)
        texts = texts + noisy
    return texts, counts


def parse_corpus(text: str) -> dict:
    path, sep, column = text.partition("=")
    if not sep or not path or not column:
        raise argparse.ArgumentTypeError(f"--add {text!r}: expected CSV=TEXT_COLUMN")
    return {"path": path, "text_column": column}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--add", type=parse_corpus, action="append", default=[], help="CSV=TEXT_COLUMN (repeatable)")
    ap.add_argument("--augment", type=int, default=0, help="perturbed copies of every text (default 0)")
    ap.add_argument("--drop", type=float, default=0.1)
    ap.add_argument("--typo", type=float, default=0.1)
    ap.add_argument("--out", required=True, help="the corpus file to write (one text per line)")
    args = ap.parse_args()
    if args.augment < 0 or not (0 <= args.drop < 1 and 0 <= args.typo <= 1):
        ap.error("--augment must be >= 0, --drop in [0, 1) and --typo in [0, 1]")
    if not args.add and not args.augment:
        ap.error("nothing to change: give --add and/or --augment (the run's own corpus is data/pretrain_corpus.txt)")
    params = load_params()
    texts, counts = build(params, args.prepared, args.add, args.augment, args.drop, args.typo, params["seed"])
    out = Path(args.out)
    write_corpus(texts, out)
    record = {"command": " ".join(["python -m bench.transfer_corpus", *sys.argv[1:]]), "texts": len(texts),
              "counts": counts}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"{len(texts)} texts -> {out}")


if __name__ == "__main__":
    main()
