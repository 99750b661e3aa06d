"""Masked-LM pretraining (banglacompress/pretrain.py, stages/pretrain.py): the corpus never holds an
evaluation text, whole-word masking, a tiny pretrain that train_teacher then starts from, the
domain-adaptive path, byte-identical reruns in two processes, and one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

from banglacompress.config import UserError, load_params
from banglacompress.data import (clean_text, make_loader, near_duplicate_key, prepare_splits, read_corpus,
                                 write_corpus)
from banglacompress.integrity import verify_checksums
from banglacompress.models import (SCRATCH_FAMILIES, TOKENIZER_MODELS, build_model, load_pretrained, save_tokenizer,
                                   train_tokenizer)
from banglacompress.pretrain import (MASKED_HEADS, MaskedTexts, PRETRAINED_DIR, check_pretrain_params, corpus_readers,
                                     mask_words, masking_for, mlm_loss, pretrain_mlm, pretraining_applies,
                                     pretraining_corpus, scratch_mlm, teacher_start, unigram_log_probs,
                                     validation_perplexity, word_starts)
from banglacompress.train import train_teacher
from conftest import (NEUTRAL, ROOT, TINY_ARCH, copy_project, linear_output_dtypes, synthetic_frame, tiny_params,
                      venv_env, write_params)

META = {"task": "binary", "label_names": ["HateSpeech"], "num_labels": 1}


def _cfg(**overrides) -> dict:
    """The params.yaml pretrain group with no extra corpora and small-model settings (and no stall check: a
    tiny model's few steps rarely get far below word frequencies)."""
    return {**load_params(ROOT / "params.yaml")["pretrain"], "corpora": [], "epochs": 2, "batch_size": 16, "lr": 0.005,
            "min_context_gain": None, **overrides}


def _chains(n_words: int = 14) -> list[str]:
    """Distinct texts in which every word fixes the next one (NEUTRAL in a cycle, from each start, of
    several lengths): a masked word is predictable from its neighbours, so MLM loss can fall fast."""
    words = NEUTRAL[:n_words]
    return [" ".join(words[(s + i) % n_words] for i in range(length))
            for s in range(n_words) for length in range(3, 10)]


# --------------------------------------------------------------------------- corpus
def test_corpus_never_holds_an_evaluation_text_and_counts_every_row(tmp_path):
    val = ["আমি ভালো বই পড়ি", "নদী আকাশ"]
    test = ["ঘৃণা করি তোমাকে"]
    train = ["আজ খেলা হবে", "আজ খেলা হবে", "আজ খেলা হবে!!", "", "  ", "আমি ভালো বই পড়ি", "মাছ ভাত"]
    corpus = tmp_path / "extra.csv"
    pd.DataFrame({"other": range(9), "comment": [
        "আমি  ভালো, বই পড়ি!!",   # near-duplicate of a val text (spacing, punctuation): removed
        "ঘৃণা করি তোমাকে 😡",     # near-duplicate of a test text (emoji): removed
        "নদী আকাশ",               # exact val text: removed
        "মাছ ভাত",                # exact duplicate of a kept train text
        "মাছ, ভাত।",              # near-duplicate of a kept train text
        "",                       # empty
        "বাড়ি স্কুল",            # new
        "😀😀",                   # no letters: its exact text is its key, so it is not an overlap
        "বাড়ি স্কুল",            # duplicate of the corpus's own earlier row
    ]}).to_csv(corpus, index=False, encoding="utf-8-sig")  # with a BOM, as toxic_multilabel.csv has
    assert corpus.read_bytes().startswith(b"\xef\xbb\xbf")

    texts, counts = pretraining_corpus(train, [{"path": str(corpus), "text_column": "comment"}], val + test + ["😡"])

    assert texts == [clean_text(t) for t in ("আজ খেলা হবে", "মাছ ভাত", "বাড়ি স্কুল", "😀😀")]  # first-seen order
    eval_keys = {near_duplicate_key(t) for t in val + test}
    assert not [t for t in texts if near_duplicate_key(t) in eval_keys]
    assert counts["train"] == {"rows_read": 7, "empty": 2, "eval_overlap": 1, "duplicates": 2, "kept": 2}
    assert counts[str(corpus)] == {"rows_read": 9, "empty": 1, "eval_overlap": 3, "duplicates": 3, "kept": 2}
    assert counts["total"] == {"rows_read": 16, "empty": 3, "eval_overlap": 4, "duplicates": 5, "kept": 4}
    for row in counts.values():
        assert row["rows_read"] == row["empty"] + row["eval_overlap"] + row["duplicates"] + row["kept"]


def test_missing_corpus_or_column_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError) as err:
        pretraining_corpus(["আজ"], [{"path": str(tmp_path / "data/raw/toxic_multilabel.csv"), "text_column": "text"}],
                           [])
    message = str(err.value)
    assert "toxic_multilabel.csv not found" in message and "`make data`" in message and "\n" not in message
    pd.DataFrame({"Data": ["আজ"]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(UserError, match=r"c.csv has no column 'text'; its columns are \['Data'\]"):
        pretraining_corpus([], [{"path": str(tmp_path / "c.csv"), "text_column": "text"}], [])


@pytest.mark.parametrize("change,message", [
    ({"epoch": 3}, "pretrain.epoch is not a pretrain option; the options are: enabled, corpora"),
    ({"model": "scratch"}, "pretrain.model is not a pretrain option"),  # teacher.model says what is pretrained
    ({"enabled": "yes"}, r"pretrain.enabled='yes' must be auto \(pretrain a scratch teacher, not a hub one\), true"),
    ({"enabled": 1}, r"pretrain.enabled=1 must be auto"),
    ({"mask_prob": 0.0}, r"pretrain.mask_prob=0.0 is out of range"),
    ({"epochs": 2.5}, r"pretrain.epochs=2.5 is out of range; it must be a whole number"),
    ({"val_fraction": 0.9}, r"pretrain.val_fraction=0.9 is out of range"),
    ({"whole_word": "yes"}, r"pretrain.whole_word='yes' must be true or false"),
    ({"corpora": [{"path": "x.csv", "column": "text"}]}, r"pretrain.corpora\[0\]=.* must have exactly the keys"),
    ({"mixed_precision": False}, r"pretrain.mixed_precision=False is not supported; choose one of: fp32, bf16"),
    ({"min_context_gain": "high"}, r"pretrain.min_context_gain='high' is out of range; it must be a number"),
    ({"min_context_gain": -1}, r"pretrain.min_context_gain=-1 is out of range"),
])
def test_bad_params_are_one_line_errors(change, message):
    check_pretrain_params(load_params(ROOT / "params.yaml")["pretrain"])  # the shipped group is valid
    with pytest.raises(UserError, match=message) as err:
        check_pretrain_params({**load_params(ROOT / "params.yaml")["pretrain"], **change})
    assert "\n" not in str(err.value)


def test_auto_pretrains_a_scratch_teacher_and_not_a_hub_one(tmp_path, monkeypatch):
    shipped = load_params(ROOT / "params.yaml")
    assert shipped["pretrain"]["enabled"] == "auto" and shipped["teacher"]["model"] == "scratch"
    monkeypatch.chdir(tmp_path)  # a repo whose pretrain stage has not run: one line that says so
    with pytest.raises(UserError, match="models/pretrained holds no pretrained model: run `dvc repro pretrain`"):
        teacher_start(shipped)
    (tmp_path / PRETRAINED_DIR).mkdir(parents=True)
    (tmp_path / PRETRAINED_DIR / "config.json").write_text("{}")
    assert teacher_start(shipped) == {**shipped["teacher"], "model": PRETRAINED_DIR}
    hub = {**shipped, "teacher": {**shipped["teacher"], "model": "csebuetnlp/banglabert"}}
    assert not pretraining_applies(hub["pretrain"], hub["teacher"]) and teacher_start(hub) == hub["teacher"]
    for enabled, expected in ((True, True), (False, False)):
        for teacher in (shipped["teacher"], hub["teacher"]):
            assert pretraining_applies({**shipped["pretrain"], "enabled": enabled}, teacher) is expected
    off = {**shipped, "pretrain": {**shipped["pretrain"], "enabled": False}}
    assert teacher_start(off) == shipped["teacher"]


def test_the_corpus_is_built_for_each_stage_that_reads_it():
    shipped = load_params(ROOT / "params.yaml")
    hub = {**shipped, "teacher": {**shipped["teacher"], "model": "csebuetnlp/banglabert"}}
    for params, transfer, expected in ((shipped, "train", ["pretrain"]), (shipped, "corpus", ["pretrain", "distill"]),
                                       (hub, "train", []), (hub, "corpus", ["distill"])):
        assert corpus_readers({**params, "distill": {**params["distill"], "transfer": transfer}}) == expected


def test_corpus_file_round_trips_every_text(tmp_path):
    texts = [clean_text(t) for t in ("আমি  ভালো\nবই", "\u2028নদী\r\nআকাশ\x85", "😀", "a\tb")]
    write_corpus(texts, tmp_path / "c.txt")
    assert read_corpus(tmp_path / "c.txt") == texts and len(texts) == 4
    write_corpus([], tmp_path / "empty.txt")
    assert read_corpus(tmp_path / "empty.txt") == []
    with pytest.raises(UserError, match="the pretrain_corpus stage writes it"):
        read_corpus(tmp_path / "absent.txt")


@pytest.mark.parametrize("family", list(SCRATCH_FAMILIES))
def test_loss_at_the_masked_tokens_only_equals_the_full_models_loss(family):
    """mlm_loss computes the vocabulary logits at the chosen tokens only (a third less time per step); it
    must be the loss the whole model computes, for every scratch family."""
    tok = train_tokenizer(_chains(), 300, 32)
    torch.manual_seed(0)
    model = scratch_mlm({**TINY_ARCH, "family": family}, tok, 32, 0.0).eval()
    assert model.config.model_type in MASKED_HEADS
    ids = torch.randint(5, len(tok), (4, 20))
    labels = torch.where(torch.rand(4, 20, generator=torch.Generator().manual_seed(1)) < 0.2, ids, -100)
    mask = torch.ones_like(ids)
    full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(mlm_loss(model, ids, mask, labels), full, atol=1e-5)


# --------------------------------------------------------------------------- masking
@pytest.mark.parametrize("tokenizer_model", TOKENIZER_MODELS)
def test_word_starts_are_the_pieces_that_start_with_the_metaspace_mark(tokenizer_model):
    texts = synthetic_frame("binary", n=200)["Comments"].tolist()
    tok = train_tokenizer(texts, 300, 32, tokenizer_model)
    probe = texts[:20] + ["ভালো!! ঘৃণা,খারাপ 😀 abc", "অচেনাশব্দ একটি"]
    enc = tok(probe, truncation=True, max_length=32)
    special = set(tok.all_special_ids)
    multi_piece = 0
    for i, ids in enumerate(enc["input_ids"]):
        pieces = tok.convert_ids_to_tokens(ids)
        assert word_starts(enc.word_ids(i)) == [p.startswith("▁") and t not in special for p, t in zip(pieces, ids)]
        words = [w for w in enc.word_ids(i) if w is not None]
        multi_piece += len(words) - len(set(words))
    assert multi_piece > 0, "the probe has no word of several pieces"


def test_batches_never_mask_special_tokens_or_padding():
    texts = synthetic_frame("binary", n=200)["Comments"].tolist()
    tok = train_tokenizer(texts[:100], 300, 32)  # markers of the other rows become [UNK]
    batch = MaskedTexts(tok, texts + ["অচেনা 😀 abc"], 32).collate(list(range(201)))
    ids = batch["input_ids"]
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert (ids == tok.unk_token_id).any() and (ids == tok.pad_token_id).any()
    assert torch.equal(batch["maskable"], ~special)  # padding is [PAD], a special token
    inputs, labels = mask_words(ids, batch["word_starts"], batch["maskable"], torch.Generator().manual_seed(0),
                                mask_id=tok.mask_token_id, random_ids=torch.arange(5, len(tok)), mask_prob=0.9)
    assert (labels[special] == -100).all() and torch.equal(inputs[special], ids[special])
    assert (labels[~special] != -100).float().mean() > 0.8


def _toy_batch():
    """Two rows: [CLS] w1a w1b w2 w3a w3b w3c [SEP] and a shorter row padded with 0 ([PAD]); id 1 is [UNK]."""
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 3], [2, 16, 17, 1, 18, 3, 0, 0]])
    starts = torch.tensor([[0, 1, 0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 1, 0, 0, 0]], dtype=torch.bool)
    maskable = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 0, 1, 0, 0, 0]], dtype=torch.bool)
    return ids, starts, maskable


def test_whole_word_masking_masks_whole_words_and_nothing_special():
    ids, starts, maskable = _toy_batch()
    words = [[[1, 2], [3], [4, 5, 6]], [[1, 2], [4]]]  # maskable token positions per word ([UNK] at 1,3 is not)
    random_ids = torch.arange(5, 40)
    seen_partial = seen_whole = 0
    for seed in range(200):
        inputs, labels = mask_words(ids, starts, maskable, torch.Generator().manual_seed(seed), mask_id=4,
                                    random_ids=random_ids, mask_prob=0.4)
        chosen = labels != -100
        assert chosen.any()
        assert not (chosen & ~maskable).any() and torch.equal(inputs[~maskable], ids[~maskable])
        assert torch.equal(labels[chosen], ids[chosen])
        for row, row_words in enumerate(words):
            for positions in row_words:
                flags = chosen[row, positions]
                assert flags.all() or not flags.any(), (seed, row, positions, chosen)
                seen_whole += int(flags.all() and len(positions) > 1)
        changed = inputs != ids
        assert not (changed & ~chosen).any()
        assert set(inputs[changed].tolist()) <= {4} | set(random_ids.tolist())
        # per-token masking (starts = maskable) does split words
        _, labels_tok = mask_words(ids, maskable, maskable, torch.Generator().manual_seed(seed), mask_id=4,
                                   random_ids=random_ids, mask_prob=0.4)
        seen_partial += int(any(0 < int((labels_tok[r, p] != -100).sum()) < len(p)
                                for r, ws in enumerate(words) for p in ws))
    assert seen_whole > 20 and seen_partial > 20


def test_masking_is_deterministic_per_seed_and_near_mask_prob():
    rng = np.random.default_rng(0)
    rows, length = 512, 48
    ids = torch.as_tensor(rng.integers(10, 300, (rows, length)))
    starts = torch.as_tensor(rng.random((rows, length)) < 0.5)  # words of ~2 tokens
    lengths = torch.as_tensor(rng.integers(5, length, rows))
    maskable = torch.arange(length)[None, :] < lengths[:, None]
    maskable[:, 0] = False
    starts[:, 1] = True

    def run(seed):
        return mask_words(ids, starts, maskable, torch.Generator().manual_seed(seed), mask_id=4,
                          random_ids=torch.arange(10, 300), mask_prob=0.15)

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    chosen = a[1] != -100
    share = chosen.sum().item() / maskable.sum().item()
    assert 0.135 < share < 0.165, share
    as_mask = (a[0] == 4) & chosen
    kept = (a[0] == ids) & chosen
    assert 0.76 < as_mask.sum().item() / chosen.sum().item() < 0.84
    assert 0.07 < kept.sum().item() / chosen.sum().item() < 0.13


# --------------------------------------------------------------------------- pretraining
def _prepared(directory):
    """Prepared splits of the synthetic binary data, written by the prepare stage's own function."""
    directory.mkdir(exist_ok=True)
    csv = directory / "labelled.csv"
    synthetic_frame("binary", n=300).to_csv(csv, index=False)
    out = directory / "prepared"
    out.mkdir()
    prepare_splits(tiny_params(csv)["data"], 0, out)
    return out


def test_scratch_pretrain_learns_saves_and_train_teacher_starts_from_it(tmp_path, capsys):
    out, live = tmp_path / "pretrained", tmp_path / "live"
    metrics = pretrain_mlm(_cfg(epochs=5, lr=0.01, val_fraction=0.05), texts=_chains(), out_dir=out, seed=0,
                           max_length=32, live_dir=live, teacher_cfg={"scratch": TINY_ARCH, "dropout": 0.0})
    losses = [row["mlm_loss"] for row in metrics["history"]]
    # from about log(vocab) towards log(14 words) (the unigram floor) in 30 steps; more takes minutes
    assert losses[-1] < 0.85 * losses[0], losses
    assert metrics["history"][-1]["val_perplexity"] < metrics["history"][0]["val_perplexity"]
    assert metrics["epochs"] == 5 and metrics["texts_train"] + metrics["texts_val"] == len(_chains())
    assert metrics["best_val_perplexity"] <= metrics["final_val_perplexity"] and metrics["tokens_seen"] > 0
    assert not [k for k in json.dumps(metrics).split('"') if "second" in k or "time" in k], metrics
    verify_checksums(out)
    assert {"model.safetensors", "config.json", "tokenizer.json", "SHA256SUMS"} <= {p.name for p in out.iterdir()}
    assert (live / "plots" / "metrics" / "train" / "mlm_loss.tsv").exists()
    assert len((live / "plots" / "metrics" / "val" / "perplexity.tsv").read_text().splitlines()) == 1 + 5
    assert "[pretrain] epoch 5/5 mlm loss" in capsys.readouterr().err
    # the chains make context worth using: the encoder ends below the context-free model
    assert metrics["context_gain"] == pytest.approx(metrics["unigram_val_perplexity"] / metrics["final_val_perplexity"])
    assert metrics["context_gain"] > 1.0, metrics

    # The encoder the teacher is built from is the pretrained one (a fresh head on top) ...
    saved = load_file(out / "model.safetensors")
    teacher, _ = load_pretrained(str(out), META, 32)
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(teacher.state_dict()[name], saved[name])
    assert torch.equal(teacher.state_dict()["bert.embeddings.word_embeddings.weight"],
                       saved["bert.embeddings.word_embeddings.weight"])
    fresh, _ = build_model("teacher", {"model": "scratch", "scratch": TINY_ARCH}, META, _chains(), 32)
    assert not torch.allclose(fresh.state_dict()[name], saved[name])
    # ... and train_teacher with teacher.model at it fine-tunes those weights (a tiny lr: they barely move).
    prepared = _prepared(tmp_path)
    cfg = {**tiny_params(tmp_path)["teacher"], "model": str(out), "epochs": 1, "lr": 1e-6, "warmup_ratio": 0.0}
    result = train_teacher(cfg, prepared=prepared, out_dir=tmp_path / "teacher", seed=0, max_length=32)
    tuned = load_file(tmp_path / "teacher" / "model.safetensors")
    assert result["epochs_run"] == 1
    assert (tuned[name] - saved[name]).abs().max() < 1e-3 < (fresh.state_dict()[name] - saved[name]).abs().max()
    assert (tmp_path / "teacher" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("param,launcher,expected", [
    ("bf16", None, torch.bfloat16), (None, "bf16", torch.bfloat16), ("fp32", "bf16", torch.float32),
    (None, None, torch.float32)])
def test_pretraining_computes_in_the_precision_asked_for(fresh_accelerate_state, tmp_path, param, launcher,
                                                         expected):
    """pretrain.mixed_precision, or `accelerate launch --mixed_precision` when it is null. mlm_loss calls the
    encoder past the forward accelerate wraps in autocast: before the fix a bf16 run computed in FP32 while
    it reported bf16. The saved model stays FP32."""
    fresh_accelerate_state.setenv("ACCELERATE_USE_CPU", "1")
    if launcher:
        fresh_accelerate_state.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    with linear_output_dtypes() as seen:
        pretrain_mlm(_cfg(epochs=1, mixed_precision=param), texts=_chains(), out_dir=tmp_path / "pt", seed=0,
                     max_length=32, teacher_cfg={"scratch": TINY_ARCH})
    assert seen == {expected}, seen
    assert all(t.dtype == torch.float32 for t in load_file(tmp_path / "pt" / "model.safetensors").values())


@pytest.mark.parametrize("family", [f for f in SCRATCH_FAMILIES if f != "bert"])
def test_every_scratch_family_pretrains_and_loads_as_a_classifier(tmp_path, family):
    arch = {**TINY_ARCH, "family": family}
    pretrain_mlm(_cfg(epochs=1), texts=_chains(), out_dir=tmp_path / "pt", seed=0, max_length=32,
                 teacher_cfg={"scratch": arch})
    saved = load_file(tmp_path / "pt" / "model.safetensors")
    model, _ = load_pretrained(str(tmp_path / "pt"), META, 32)
    state = model.state_dict()
    shared = [k for k in saved if k in state and "embeddings.word_embeddings" in k]
    assert shared and all(torch.equal(state[k], saved[k]) for k in shared)


def test_domain_adaptive_pretraining_of_a_local_masked_lm(tmp_path):
    tok = train_tokenizer(_chains(), 300, 32)
    source = tmp_path / "hub_like"
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=32,
                               pad_token_id=tok.pad_token_id)).save_pretrained(source)
    save_tokenizer(tok, source)
    metrics = pretrain_mlm(_cfg(epochs=1), texts=_chains(), out_dir=tmp_path / "dapt", seed=0, max_length=32,
                           teacher_cfg={"model": str(source), "dropout": 0.2})
    assert metrics["tokenizer"] == f"from {source}" and metrics["vocab_size"] == len(tok)
    before, after = load_file(source / "model.safetensors"), load_file(tmp_path / "dapt" / "model.safetensors")
    name = "bert.encoder.layer.0.output.dense.weight"
    assert before[name].shape == after[name].shape and not torch.equal(before[name], after[name])
    assert (tmp_path / "dapt" / "tokenizer.json").exists()
    adapted = AutoModelForMaskedLM.from_pretrained(tmp_path / "dapt").config
    assert adapted.vocab_size == len(tok)
    assert (adapted.hidden_dropout_prob, adapted.attention_probs_dropout_prob) == (0.2, 0.2)  # teacher.dropout
    with pytest.raises(UserError, match="cannot load model .* for pretraining"):
        pretrain_mlm(_cfg(), texts=_chains(), out_dir=tmp_path / "x", seed=0, max_length=32,
                     teacher_cfg={"model": str(tmp_path / "absent")})


def test_context_free_perplexity_is_that_of_a_model_predicting_each_tokens_frequency():
    """unigram_log_probs scored by validation_perplexity on the chosen tokens: a masked LM whose logits are
    those log-probabilities at every position (zero output weights, bias = log p) has exactly that
    perplexity. The frequencies are add-one smoothed counts of the non-special tokens of the held-in texts."""
    # some words far more frequent than others, so that scoring the wrong tokens changes the perplexity
    corpus = _chains() + [" ".join([NEUTRAL[0]] * 6)] * 20 + [" ".join(NEUTRAL[1:4])] * 10
    tok = train_tokenizer(corpus, 300, 32)
    texts = MaskedTexts(tok, corpus, 32)
    log_p = unigram_log_probs(texts, len(tok))
    ids = [i for row in texts.input_ids for i in row if i not in tok.all_special_ids]
    assert log_p.exp().sum().item() == pytest.approx(1.0)
    assert log_p[ids[0]].exp().item() == pytest.approx((ids.count(ids[0]) + 1) / (len(ids) + len(tok)))
    assert log_p[tok.cls_token_id].exp().item() == pytest.approx(1 / (len(ids) + len(tok)))  # never counted
    model = scratch_mlm(TINY_ARCH, tok, 32, 0.0).eval()
    with torch.no_grad():
        model.cls.predictions.decoder.weight.zero_()  # tied to the input embeddings: every logit is the bias
        model.cls.predictions.bias.copy_(log_p.float())
    masking = masking_for(_cfg(), tok, model)
    perplexity, unigram = validation_perplexity(model, make_loader(texts, 8, shuffle=False), masking, 0, "cpu", log_p)
    assert perplexity == pytest.approx(unigram, rel=1e-4)
    assert unigram < 14  # below the 14 words' uniform perplexity: the frequent words are the likely ones


def test_a_stalled_pretraining_stops_with_one_line_and_saves_nothing(tmp_path):
    """An encoder that learned nothing from context (lr 1e-8: its weights stay random, its perplexity above
    a frequency model's) must not become the teacher's start. Without the check it was saved silently."""
    out = tmp_path / "pretrained"
    with pytest.raises(UserError, match=r"pretraining stalled: held-out perplexity [\d.]+ against [\d.]+ for a "
                                        r"model that ignores context .* pretrain.min_context_gain asks for 1.5x") as err:
        pretrain_mlm(_cfg(epochs=1, lr=1e-8, min_context_gain=1.5), texts=_chains(), out_dir=out, seed=0,
                     max_length=32, teacher_cfg={"scratch": TINY_ARCH})
    assert "\n" not in str(err.value) and not out.exists()
    pretrain_mlm(_cfg(epochs=1, lr=1e-8, min_context_gain=None), texts=_chains(), out_dir=out, seed=0,
                 max_length=32, teacher_cfg={"scratch": TINY_ARCH})  # null: no check
    assert (out / "model.safetensors").exists()


# --------------------------------------------------------------------------- the stage
def _stage_repo(tmp_path, name, teacher_model="scratch", transfer="train", **pretrain):
    repo = copy_project(tmp_path / name)
    params = tiny_params(tmp_path / "unused.csv")
    params["teacher"].update(scratch=dict(TINY_ARCH), model=teacher_model)
    params["distill"]["transfer"] = transfer
    params["pretrain"].update(pretrain)
    write_params(repo, params)
    prepared = _prepared(tmp_path / f"{name}_data")
    prepared.rename(repo / "data" / "prepared")
    return repo


def _start(repo):
    """The two stage scripts in order, as dvc repro runs them."""
    script = f"{sys.executable} stages/pretrain_corpus.py && {sys.executable} stages/pretrain.py"
    return subprocess.Popen(["bash", "-c", script], cwd=repo, env={**venv_env(), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_stage_reruns_byte_identical_in_two_processes(tmp_path):
    corpus = tmp_path / "extra.csv"
    pd.DataFrame({"text": _chains()}).to_csv(corpus, index=False, encoding="utf-8-sig")
    pretrain = dict(enabled=True, corpora=[{"path": str(corpus), "text_column": "text"}], epochs=2, batch_size=16)
    repos = [_stage_repo(tmp_path, name, **pretrain) for name in ("a", "b")]
    runs = [_start(repo) for repo in repos]  # both at once: two processes, and half the wall time
    for run in runs:
        _, err = run.communicate(timeout=240)
        assert run.returncode == 0, err[-3000:]
    a, b = (repo / "models" / "pretrained" for repo in repos)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    for name in ("metrics/pretrain.json", "metrics/pretrain_corpus.json", "data/pretrain_corpus.txt"):
        assert (repos[0] / name).read_bytes() == (repos[1] / name).read_bytes(), name
    counts = json.loads((repos[0] / "metrics" / "pretrain_corpus.json").read_text())
    assert counts[str(corpus)]["kept"] > 0 and counts["train"]["kept"] > 0
    assert len(read_corpus(repos[0] / "data" / "pretrain_corpus.txt")) == counts["total"]["kept"]
    assert json.loads((repos[0] / "metrics" / "pretrain.json").read_text())["epochs"] == 2
    assert (repos[0] / "plots" / "pretrain" / "plots" / "metrics" / "val" / "perplexity.tsv").exists()


def test_stage_skips_a_hub_teacher_and_missing_corpus_names_make_data(tmp_path):
    # auto with a hub teacher: skipped without loading it (the id does not exist: nothing is downloaded), and
    # without reading the default corpora (absent here): a user without them can still run the pipeline
    defaults = load_params(ROOT / "params.yaml")["pretrain"]["corpora"]
    hub = _stage_repo(tmp_path, "hub", teacher_model="nobody/no-such-model", corpora=defaults, enabled="auto")
    on = _stage_repo(tmp_path, "on", corpora=defaults, enabled="auto")  # data/raw is empty
    # a hub teacher distilled with distill.transfer: corpus: the corpus is built for distill, the pretraining skipped
    extra = tmp_path / "extra.csv"
    pd.DataFrame({"text": _chains()}).to_csv(extra, index=False, encoding="utf-8")
    transfer = _stage_repo(tmp_path, "transfer", teacher_model="nobody/no-such-model", transfer="corpus",
                           corpora=[{"path": str(extra), "text_column": "text"}], enabled="auto")
    runs = [_start(hub), _start(on), _start(transfer)]
    (_, hub_err), (_, on_err), (_, transfer_err) = (run.communicate(timeout=240) for run in runs)
    assert runs[2].returncode == 0, transfer_err[-2000:]
    assert len(read_corpus(transfer / "data" / "pretrain_corpus.txt")) > 0
    assert json.loads((transfer / "metrics" / "pretrain.json").read_text())["skipped"] is True
    assert runs[0].returncode == 0, hub_err[-2000:]
    record = json.loads((hub / "metrics" / "pretrain.json").read_text())
    assert record["skipped"] is True and "nobody/no-such-model" in record["reason"]
    assert (hub / "models" / "pretrained" / "SKIPPED.json").exists() and (hub / "plots" / "pretrain").is_dir()
    assert read_corpus(hub / "data" / "pretrain_corpus.txt") == []
    assert json.loads((hub / "metrics" / "pretrain_corpus.json").read_text())["skipped"] is True
    assert runs[1].returncode == 2
    errors = [line for line in on_err.splitlines() if line.startswith("error:")]
    assert errors == [line for line in on_err.splitlines() if "Traceback" in line or line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: pretrain_corpus: data/raw/cyberbully_multilabel.csv not found:") and "`make data`" in errors[0], on_err
    assert not (on / "models" / "pretrained").exists() and not (on / "data" / "pretrain_corpus.txt").exists()
