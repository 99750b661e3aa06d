import unicodedata

import numpy as np
import pandas as pd
import pytest

from banglacompress.config import UserError
from banglacompress.data import (Encoded, LengthBucketSampler, class_weights, clean_text, deduplicate,
                                 deduplicate_near, load_labelled, multilabel_fold_ids, multilabel_holdout,
                                 near_duplicate_key, prepare_splits, split)
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


def test_a_bom_before_the_first_column_name_is_not_part_of_it(tmp_path):
    """toxic_multilabel.csv starts with a UTF-8 BOM: its first column must read as `text`, not `\ufefftext`."""
    frame = synthetic_frame("multilabel", n=60).rename(columns={"comment": "text"})
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode("utf-8"))
    assert path.read_text(encoding="utf-8").startswith("\ufefftext,")
    df, meta = load_labelled(path, "text", ["hate", "sexual", "religious"])
    assert meta["task"] == "multilabel" and meta["rows_read"] == 60 and not df.text.str.contains("\ufeff").any()


@pytest.mark.real_data
def test_toxic_multilabel_reads_by_its_text_column(shared_data):
    labels = ["vulgar", "hate", "religious", "threat", "troll", "Insult"]
    assert (shared_data / "toxic_multilabel.csv").read_bytes().startswith(b"\xef\xbb\xbftext,")
    df, meta = load_labelled(shared_data / "toxic_multilabel.csv", "text", labels)
    assert meta["task"] == "multilabel" and meta["rows_read"] == len(df) == 16073
    assert df[labels].sum().tolist() == [2505, 1898, 1418, 1419, 1643, 2719]  # ../shared/data/SOURCES.md


def test_dedup_majority_vote_ties_to_positive():
    df = pd.DataFrame({"text": ["a", "a", "a", "b", "b", "c"], "y": [0, 0, 1, 0, 1, 1]})
    out, stats = deduplicate(df, ["y"], "binary")
    assert dict(zip(out.text, out.y)) == {"a": 0, "b": 1, "c": 1}
    assert stats == {"duplicate_rows_removed": 3, "duplicate_texts": 2, "conflicting_duplicate_texts": 2}


def test_near_duplicates_share_a_key_and_are_removed_before_splitting():
    """Punctuation, spaces, digits, emoji and case do not make another comment; vowel signs do; and
    texts without letters are not all one comment."""
    assert near_duplicate_key("ভালো!!") == near_duplicate_key("ভা লো 😀 ১২") == near_duplicate_key("ভালো...")
    assert near_duplicate_key("কিছু") != near_duplicate_key("কছ")  # vowel signs are marks: kept
    assert near_duplicate_key("Bad MOVIE") == near_duplicate_key("bad movie!")
    df = pd.DataFrame({"text": ["ভালো!!", "ভালো 😀", "ভালো", "খারাপ", "😀", "😀😀", "১২", "খারাপ"],
                       "y": [1, 1, 0, 0, 1, 0, 1, 0]})
    out, stats = deduplicate_near(df, ["y"], "binary")
    assert list(out.text) == ["ভালো!!", "খারাপ", "😀", "😀😀", "১২"]
    assert dict(zip(out.text, out.y))["ভালো!!"] == 1  # 2 of 3 copies say 1
    assert stats == {"duplicate_rows_removed": 1, "duplicate_texts": 1, "conflicting_duplicate_texts": 0,
                     "near_duplicate_rows_removed": 2, "near_duplicate_texts": 1,
                     "near_conflicting_duplicate_texts": 1}


def test_prepare_counts_near_duplicates_and_no_test_text_has_a_train_twin(tmp_path):
    frame = synthetic_frame("binary", n=300)
    twins = frame.head(40).assign(Comments=lambda d: d.Comments + " !!! ১২৩")  # near-copies of 40 rows
    path = tmp_path / "b.csv"
    pd.concat([frame, twins]).to_csv(path, index=False)
    cfg = {"path": str(path), "text_column": "Comments", "label_columns": ["HateSpeech"], "task": "auto",
           "val_size": 0.2, "test_size": 0.2, "fraction": 1.0}
    out = tmp_path / "prepared"
    out.mkdir()
    metrics = prepare_splits(cfg, 0, out)
    exact = metrics["duplicate_rows_removed"]
    assert metrics["near_duplicate_rows_removed"] >= 40 - exact - 5  # some originals were exact copies already
    keys = {name: set(pd.read_csv(out / f"{name}.csv").text.map(near_duplicate_key)) for name in ("train", "test")}
    assert not keys["train"] & keys["test"]


@pytest.mark.real_data
def test_no_near_duplicate_of_a_train_text_in_test_on_real_data(shared_data, tmp_path):
    """The audit found 13 test rows with a near-twin in train on hatespeech_binary.csv; now none."""
    cfg = {"path": str(shared_data / "hatespeech_binary.csv"), "text_column": "Comments",
           "label_columns": ["HateSpeech"], "task": "auto", "val_size": 0.1, "test_size": 0.1, "fraction": 1.0}
    metrics = prepare_splits(cfg, 42, tmp_path)
    assert metrics["near_duplicate_rows_removed"] > 0
    train = set(pd.read_csv(tmp_path / "train.csv").text.map(near_duplicate_key))
    test = pd.read_csv(tmp_path / "test.csv").text.map(near_duplicate_key)
    assert not [k for k in test if k in train]


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
    kept, held = multilabel_holdout(y, 0.2, seed=0)
    assert sorted([*kept, *held]) == list(range(3000)) and abs(len(held) - 600) <= 1
    for part, share in ((kept, 0.8), (held, 0.2)):
        assert np.allclose(y[part].sum(axis=0) / y.sum(axis=0), share, atol=0.01)
    folds = multilabel_fold_ids(y, 5, seed=0)
    assert np.bincount(folds).tolist() == [600] * 5
    for f in range(5):
        assert np.allclose(y[folds == f].sum(axis=0) / y.sum(axis=0), 0.2, atol=0.01)


def _label_share_gap(parts, y) -> float:
    """Largest gap between a label's positive share in any split and in the whole data."""
    overall = y.mean(axis=0)
    return max(float(np.abs(part.mean(axis=0) - overall).max()) for part in parts)


@pytest.mark.parametrize("name, labels", [
    ("cyberbully_multilabel.csv", ["bully", "sexual", "religious", "threat", "spam"]),
    ("toxic_multilabel.csv", ["vulgar", "hate", "religious", "threat", "troll", "Insult"]),
])
def test_multilabel_split_quality_on_real_data(shared_data, name, labels):
    """The library split (iterative-stratification) keeps every label's share within 0.002 of the whole
    data in train, val and test; the hand-written one it replaced measured 0.00036 (cyberbully) and
    0.00034 (toxic) on the same data and seed, the library 0.00043 and 0.00039: the same quality."""
    frame = pd.read_csv(shared_data / name)
    meta = {"task": "multilabel", "target_columns": labels, "label_names": labels}
    parts = split(frame[["text" if "text" in frame else "comment", *labels]], meta, 0.1, 0.1, seed=42)
    assert [len(p) for p in parts.values()] == pytest.approx([0.8 * len(frame), 0.1 * len(frame), 0.1 * len(frame)],
                                                             abs=2)
    assert _label_share_gap([p[labels].to_numpy() for p in parts.values()], frame[labels].to_numpy()) < 0.002


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


def test_split_seed_holds_the_split_while_the_seed_changes(tmp_path):
    path = tmp_path / "b.csv"
    synthetic_frame("binary", n=300).to_csv(path, index=False)
    cfg = {"path": str(path), "text_column": "Comments", "label_columns": ["HateSpeech"], "val_size": 0.1,
           "test_size": 0.1}
    outs = {}
    for name, seed, split_seed in (("a", 1, None), ("b", 2, None), ("c", 2, 1)):
        (tmp_path / name).mkdir()
        prepare_splits({**cfg, "split_seed": split_seed}, seed, tmp_path / name)
        outs[name] = (tmp_path / name / "test.csv").read_bytes()
    assert outs["a"] != outs["b"]  # the seed moves the split...
    assert outs["a"] == outs["c"]  # ...unless data.split_seed holds it
