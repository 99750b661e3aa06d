"""bench.transfer_corpus: other KD transfer sets for a screen. Perturbed copies must never hold an
evaluation text (a dropped word can turn a train comment into a val comment), and the corpus is seeded."""
import itertools
import random

import pandas as pd
import pytest
import yaml

from banglacompress.data import clean_text, dedup_key, load_split, prepare_splits
from bench.transfer_corpus import build, perturb
from conftest import ROOT


def test_perturb_drops_words_and_deletes_characters_and_keeps_a_word():
    text = "আমি ভালো বই পড়ি আজ"
    assert perturb(text, random.Random(0), drop=0.0, typo=0.0) == text
    assert len(perturb(text, random.Random(0), drop=0.99, typo=0.0).split(" ")) == 1  # never empty
    noisy = perturb(text, random.Random(0), drop=0.0, typo=1.0)
    assert [len(a) - len(b) for a, b in zip(text.split(" "), noisy.split(" "))] == [1, 1, 0, 1, 0]  # "বই", "আজ": 2 code points


@pytest.fixture
def prepared(tmp_path):
    csv = tmp_path / "binary.csv"
    # Every 1-3-word sentence of 6 words, so dropping a word from a train text often yields a val/test text.
    words = ["আমি", "তুমি", "ভালো", "বই", "খেলা", "গান"]
    texts = [" ".join(t) for n in (1, 2, 3) for t in itertools.product(words, repeat=n)]
    pd.DataFrame({"Comments": texts, "HateSpeech": [i % 2 for i in range(len(texts))]}).to_csv(csv, index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(path=str(csv))
    params["pretrain"]["corpora"] = []
    (tmp_path / "prepared").mkdir()
    prepare_splits(params["data"], 42, tmp_path / "prepared")
    return params, str(tmp_path / "prepared")


def test_augmented_corpus_holds_no_evaluation_text_and_no_duplicate(prepared):
    params, path = prepared
    texts, counts = build(params, path, add=[], augment=2, drop=0.3, typo=0.1, seed=42)
    train, val, test = (load_split(path, s)[0] for s in ("train", "val", "test"))
    eval_keys = {dedup_key(clean_text(t)) for t in val + test}
    keys = [dedup_key(t) for t in texts]
    assert not eval_keys & set(keys)
    assert len(keys) == len(set(keys))
    # the perturbation did hit evaluation texts here, so the filter above had work to do
    assert counts["augment_1"]["eval_overlap"] + counts["augment_2"]["eval_overlap"] > 0
    added = counts["augment_1"]["kept"] + counts["augment_2"]["kept"]
    assert added > 0 and len(texts) == counts["total"]["kept"] + added
    for copy in ("augment_1", "augment_2"):
        c = counts[copy]
        assert c["rows_read"] == c["eval_overlap"] + c["duplicates"] + c["kept"]


def test_augmented_corpus_is_seeded(prepared):
    params, path = prepared
    first = build(params, path, add=[], augment=1, drop=0.1, typo=0.1, seed=42)[0]
    assert first == build(params, path, add=[], augment=1, drop=0.1, typo=0.1, seed=42)[0]
    assert first != build(params, path, add=[], augment=1, drop=0.1, typo=0.1, seed=43)[0]
