"""Classical baseline on the pipeline's own prepared splits (data/prepared): TF-IDF char 2-5-grams
+ logistic regression, thresholds tuned on val, scored on test.

    python bench/baseline_tfidf.py [data/prepared] > bench/baseline_tfidf.json"""
import json
import sys
import time

from banglacompress.baseline import evaluate_baseline
from banglacompress.data import load_split


def main() -> None:
    prepared = sys.argv[1] if len(sys.argv) > 1 else "data/prepared"
    splits = {}
    for name in ("train", "val", "test"):
        texts, y, meta = load_split(prepared, name)
        splits[name] = (texts, y)
    start = time.perf_counter()
    result = evaluate_baseline(meta["task"], meta["label_names"], splits)
    result["train_seconds"] = time.perf_counter() - start
    print(json.dumps({"method": "tfidf_char2-5_logreg", "prepared": prepared, **result}, indent=2))


if __name__ == "__main__":
    main()
