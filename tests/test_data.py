import unicodedata

import numpy as np
import pandas as pd
import pytest

from banglacompress.config import UserError
from banglacompress.data import (Encoded, LengthBucketSampler, class_weights, clean_text, deduplicate,
                                 iterative_stratify, load_labelled, split)
from conftest import synthetic_frame


def test_clean_text_nfc_and_whitespace():
    decomposed = unicodedata.normalize("NFD", "কী ") + "  \t\n খবর "
    assert clean_text(decomposed) == unicodedata.normalize("NFC", "কী খবর")


def test_infers_each_task(tmp_path):
    for task, text, labels in [("binary", "Comments", ["HateSpeech"]),
                               ("multilabel", "comment", ["hate", "sexual", "religious"]),
                               ("multiclass", "Data", ["Label"])]:
        path = tmp_path / f"{task}.csv"
        synthetic_frame(task, n=100).to_csv(path, index=False)
        df, meta = load_labelled(path, text, labels)
        assert meta["task"] == task
        assert meta["num_labels"] == {"binary": 1, "multilabel": 3, "multiclass": 3}[task]


def test_dedup_majority_vote_ties_to_positive():
    df = pd.DataFrame({"text": ["a", "a", "a", "b", "b", "c"], "y": [0, 0, 1, 0, 1, 1]})
    out, stats = deduplicate(df, ["y"], "binary")
    assert dict(zip(out.text, out.y)) == {"a": 0, "b": 1, "c": 1}
    assert stats == {"duplicate_rows_removed": 3, "duplicate_texts": 2, "conflicting_duplicate_texts": 2}


def test_split_is_disjoint_stratified_and_seeded(tmp_path):
    path = tmp_path / "b.csv"
    synthetic_frame("binary", n=1000).drop_duplicates("Comments").to_csv(path, index=False)
    df, meta = load_labelled(path, "Comments", ["HateSpeech"])
    a = split(df, meta, 0.1, 0.1, seed=1)
    b = split(df, meta, 0.1, 0.1, seed=1)
    assert all(a[k].equals(b[k]) for k in a)
    texts = [set(a[k].text) for k in a]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    rate = df.HateSpeech.mean()
    for part in a.values():
        assert abs(part.HateSpeech.mean() - rate) < 0.03


def test_iterative_stratification_keeps_label_ratios():
    rng = np.random.default_rng(0)
    y = (rng.random((3000, 5)) < [0.6, 0.15, 0.1, 0.05, 0.02]).astype(int)
    fold = iterative_stratify(y, [0.8, 0.1, 0.1], seed=0)
    assert set(np.bincount(fold)) and abs(np.bincount(fold)[1] - 300) <= 15
    for f in range(3):
        share = y[fold == f].sum(axis=0) / y.sum(axis=0)
        assert np.allclose(share, [0.8, 0.1, 0.1][f], atol=0.03), share


def test_class_weights():
    y = np.array([[1], [0], [0], [0]], dtype=np.float32)
    assert class_weights(y, "binary").tolist() == [3.0]
    w = class_weights(np.array([0, 0, 0, 1]), "multiclass")
    assert w[1] > w[0]


def test_dynamic_padding_and_bucketing():
    class Tok:
        pad_token_id = 0

        def __call__(self, texts, truncation, max_length):
            return {"input_ids": [[1] * min(len(t), max_length) for t in texts]}

    ds = Encoded(Tok(), ["a" * n for n in [3, 9, 2, 5]], np.zeros((4, 1), np.float32), max_length=8)
    batch = ds.collate([0, 2])
    assert batch["input_ids"].shape == (2, 3) and batch["attention_mask"].sum() == 5
    sampler = LengthBucketSampler([3, 8, 2, 5], batch_size=2, shuffle=False)
    assert list(sampler) == [[2, 0], [3, 1]]
    shuffled = LengthBucketSampler(list(range(100)), batch_size=10, shuffle=True)
    assert sorted(i for b in shuffled for i in b) == list(range(100))


def test_too_few_rows_to_stratify(tmp_path):
    frame = synthetic_frame("binary", n=200)
    frame.loc[:, "HateSpeech"] = 0
    frame.loc[:3, "HateSpeech"] = 1
    path = tmp_path / "few.csv"
    frame.to_csv(path, index=False)
    df, meta = load_labelled(path, "Comments", ["HateSpeech"])
    with pytest.raises(UserError, match="at least 10"):
        split(df, meta, 0.1, 0.1, seed=0)
