import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from banglacompress.config import UserError
from banglacompress.models import (DROPOUT_FIELDS, SCRATCH_FAMILIES, TOKENIZER_MODELS, build_model, encoder_linears,
                                   load_model_dir, save_model_dir, train_sentencepiece)
from conftest import TINY_ARCH, synthetic_frame

META = {"task": "binary", "label_names": ["HateSpeech"], "num_labels": 1, "target_columns": ["HateSpeech"]}
TEXTS = synthetic_frame("binary", n=200).Comments.tolist()


@pytest.mark.parametrize("family", SCRATCH_FAMILIES)
def test_scratch_model_round_trips_with_auto_classes(tmp_path, family):
    model, tok = build_model("teacher", {"model": "scratch", "scratch": dict(TINY_ARCH, family=family)},
                             META, TEXTS, max_length=32)
    save_model_dir(tmp_path, model, tok, {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5]})
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    batch = tok2(TEXTS[:4], padding=True, return_tensors="pt")
    assert tok2(TEXTS[0])["input_ids"] == tok(TEXTS[0])["input_ids"]
    assert torch.allclose(model.eval()(**batch).logits, reloaded(**batch).logits, atol=1e-6)
    assert reloaded.config.num_labels == 1
    assert encoder_linears(reloaded), "no encoder Linear layers found"
    assert not any("classifier" in n or "embeddings" in n for n in encoder_linears(reloaded))


@pytest.mark.parametrize("tokenizer_model", TOKENIZER_MODELS)
def test_tokenizer_keeps_bangla_vowel_signs(tokenizer_model):
    """Vowel signs (ি ু া) are combining marks: a normalizer that strips accents (BERT's) or NFKD-folds
    them would merge different words. They must survive in the tokens themselves, and round-trip."""
    _, tok = build_model("teacher", {"model": "scratch", "scratch": dict(TINY_ARCH, tokenizer_model=tokenizer_model)},
                         META, TEXTS, max_length=32)
    text = "কিছু খারাপ"
    ids = tok(text)["input_ids"][1:-1]
    assert tok.unk_token_id not in ids
    pieces = "".join(tok.convert_ids_to_tokens(ids)).replace("▁", "")
    assert pieces == text.replace(" ", ""), pieces
    assert all(sign in pieces for sign in "িুা")
    assert tok.decode(ids).strip() == text


def test_hub_path_with_local_save_pretrained_model(tmp_path):
    """The hub code path (AutoModel.from_pretrained on a name/path), exercised offline."""
    _, tok = build_model("teacher", {"model": "scratch", "scratch": TINY_ARCH}, META, TEXTS, max_length=32)
    base = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=7))
    base.save_pretrained(tmp_path / "hub")
    tok.save_pretrained(tmp_path / "hub")
    meta = {"task": "multilabel", "label_names": ["a", "b", "c"], "num_labels": 3}
    model, tok2 = build_model("teacher", {"model": str(tmp_path / "hub")}, meta, TEXTS, max_length=32)
    assert model.config.num_labels == 3 and model.config.problem_type == "multi_label_classification"
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, base.bert.embeddings.word_embeddings.weight)
    assert tok2.model_max_length == 32


def test_missing_hub_model_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="cannot load model"):
        build_model("teacher", {"model": str(tmp_path / "nope")}, META, TEXTS, max_length=32)


def test_load_model_dir_rejects_foreign_directory(tmp_path):
    with pytest.raises(UserError, match="not a model directory"):
        load_model_dir(tmp_path)


def _letter_soup(seed: int, n: int) -> list[str]:
    """Texts of random words over 12 Bangla letters and signs: many words no vocabulary holds whole, so
    they split into pieces in ways that depend on the order the pieces were learned."""
    rng = random.Random(seed)
    words = lambda k: " ".join("".join(rng.choice("অআইকখগঘচছজাি") for _ in range(rng.randint(2, 7)))
                               for _ in range(k))
    return [words(rng.randint(3, 10)) for _ in range(n)]


@pytest.mark.parametrize("tokenizer_model", TOKENIZER_MODELS)
def test_fast_tokenizer_splits_text_as_sentencepiece_does(tmp_path, tokenizer_model):
    """The Rust tokenizer is built from the SentencePiece model's pieces (and, for BPE, merges derived from
    their order): it must cut every unseen text into the pieces SentencePiece itself would, also after a
    save / load round trip. BPE merges applied in the reverse order match on 0 of these 100 texts."""
    texts, probe = _letter_soup(0, 400), _letter_soup(1, 100)
    sp = train_sentencepiece(texts, 150, tokenizer_model)
    arch = dict(TINY_ARCH, tokenizer_model=tokenizer_model, vocab_size=150)
    model, tok = build_model("teacher", {"model": "scratch", "scratch": arch}, META, texts, max_length=128)
    save_model_dir(tmp_path, model, tok, {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5]})
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in probe:
        ids = sp.encode(text)
        assert tok(text)["input_ids"][1:-1] == ids, text
        assert reloaded(text)["input_ids"][1:-1] == ids, text
    assert sum(len(sp.encode(t)) > len(t.split()) + 3 for t in probe) > 50, "too few words split into pieces"


def test_unknown_tokenizer_model_is_a_one_line_error():
    with pytest.raises(UserError, match=r"teacher.scratch.tokenizer_model='wordpiece' is not supported; choose one "
                                        r"of \['unigram', 'bpe'\]") as err:
        build_model("teacher", {"model": "scratch", "scratch": dict(TINY_ARCH, tokenizer_model="wordpiece")},
                    META, TEXTS, max_length=32)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("family", SCRATCH_FAMILIES)
def test_dropout_applies_to_a_loaded_model_not_only_to_a_scratch_one(tmp_path, family):
    """teacher.dropout on a hub / local / pretrained model: from_pretrained alone keeps the saved config's
    dropout, so a sweep of teacher.dropout on the pretrained encoder changed nothing (two identical teachers)."""
    saved, tok = build_model("teacher", {"model": "scratch", "scratch": dict(TINY_ARCH, family=family), "dropout": 0.1},
                             META, TEXTS, max_length=32)
    save_model_dir(tmp_path, saved, tok, {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5]})
    model, _ = build_model("teacher", {"model": str(tmp_path), "dropout": 0.3}, META, TEXTS, max_length=32)
    fields = {k: v for k, v in model.config.to_dict().items() if k in DROPOUT_FIELDS}
    assert len(fields) == 2 and set(fields.values()) == {0.3}, fields
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert 0.3 in rates and 0.1 not in rates, rates


@pytest.mark.parametrize("source", ["local", "scratch"])
@pytest.mark.parametrize("dropout", [1.0, -0.1, "0.2", None])
def test_a_bad_dropout_is_a_one_line_error(tmp_path, dropout, source):
    """A scratch model too: its config took the value unchecked, so 1.0 or -0.1 ended in torch's ValueError
    traceback from nn.Dropout."""
    if source == "local":
        saved, tok = build_model("teacher", {"model": "scratch", "scratch": TINY_ARCH}, META, TEXTS, max_length=32)
        save_model_dir(tmp_path, saved, tok, {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5]})
    cfg = {"model": str(tmp_path)} if source == "local" else {"model": "scratch", "scratch": TINY_ARCH}
    with pytest.raises(UserError, match=r"student.dropout=.* must be a number in \[0, 1\)") as err:
        build_model("student", {**cfg, "dropout": dropout}, META, TEXTS, max_length=32)
    assert "\n" not in str(err.value)
