"""KD methods: logit / hidden / attention / multi_level on tiny random-init models built from config."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from banglacompress.baseline import fit_tfidf_lr, predict_proba
from banglacompress.config import UserError
from banglacompress.data import Encoded, load_split, prepare_splits
from banglacompress.distill import (KD_METHODS, attention_term, blend_tfidf, build_kd, check_distill_params, copied_layers,
                                    hidden_term, kd_settings, make_projections, resolve_layer_map, student_from_teacher,
                                    teacher_labels, train_student, uniform_layer_map, FeatureKD)
from banglacompress.models import DROPOUT_FIELDS, build_scratch_with_tokenizer, encoder_blocks, train_tokenizer
from banglacompress.scoring import logits_of, tune_thresholds
from banglacompress.train import fit, predict_logits, train_teacher
from conftest import TASKS, run_stage, synthetic_frame, task_data, tiny_params, write_params

# Different widths (projection needed) and head counts (maps averaged over heads).
TEACHER = {"family": "bert", "layers": 2, "hidden": 48, "heads": 4, "ffn": 96}
STUDENT = {"family": "bert", "layers": 1, "hidden": 32, "heads": 2, "ffn": 64}


@pytest.fixture(autouse=True)
def one_thread():
    """Not a timing test: one thread, so parallel workers on a 2-core machine do not fight."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pair(task, n=40, vocab=200, **kd):
    """Teacher and student on one tokenizer, dropout off; the teacher's logits cached like the stage does."""
    texts, y, meta = task_data(task, n)
    tok = train_tokenizer(texts, vocab, 32)
    torch.manual_seed(0)
    teacher = build_scratch_with_tokenizer(TEACHER, meta, tok, 32, dropout=0.0).eval()
    student = build_scratch_with_tokenizer(STUDENT, meta, tok, 32, dropout=0.0)
    if "attention" in kd.get("method", ""):
        teacher.set_attn_implementation("eager")  # as load_model_dir(attn_implementation="eager") does
    teacher_set, train_set = Encoded(tok, texts, None, 32), Encoded(tok, texts, y, 32)
    logits = torch.from_numpy(predict_logits(teacher, teacher_set))
    cfg = {"method": "logit", "alpha": 0.5, "temperature": 2.0, **kd}  # method options: their defaults
    loss_fn, extra, settings = build_kd(cfg, task, logits, teacher=teacher, teacher_set=teacher_set,
                                        student=student, student_set=train_set)
    return dict(texts=texts, y=y, meta=meta, tok=tok, teacher=teacher, student=student, teacher_set=teacher_set,
                train_set=train_set, loss_fn=loss_fn, extra=extra, settings=settings)


# --------------------------------------------------------------------------- every loss trains
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("method", list(KD_METHODS))
def test_loss_is_finite_and_decreases(method, task):
    p = _pair(task, method=method)
    batch = p["train_set"].collate(list(range(12)))
    params = [q for m in (p["student"], *p["extra"]) for q in m.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)  # 1e-2 overshoots and spikes on some seeds
    p["student"].train()
    losses = []
    for _ in range(40):
        loss = p["loss_fn"](p["student"], batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.9 * losses[0], losses  # the mean of the last steps: Adam wobbles


@pytest.mark.parametrize("attention_loss", ["mse", "kl"])
@pytest.mark.parametrize("term", [hidden_term, attention_term], ids=["hidden", "attention"])
def test_each_feature_term_alone_decreases(term, attention_loss):
    """The feature terms are small next to the label loss, so check them on their own too."""
    p = _pair("multiclass", method="multi_level")
    teacher, student = p["teacher"], p["student"]
    student.set_attn_implementation("eager")
    kd = FeatureKD(teacher, p["teacher_set"], [1], make_projections(student, teacher, [1]), attention_loss)
    batch = p["train_set"].collate(list(range(12)))
    opt = torch.optim.Adam([*student.parameters(), *kd.projections.parameters()], lr=1e-2)
    losses = []
    for _ in range(30):
        out = _outputs(student, batch["input_ids"], batch["attention_mask"])
        loss = term(kd, out, kd.teacher_outputs(batch, "cpu", True, True), batch["attention_mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("method", ["hidden", "multi_level"])
def test_gradients_reach_student_and_projection(method):
    p = _pair("binary", method=method, alpha=0.0)
    (projections,) = p["extra"]  # 32 -> 48: a learned Linear, handed to fit as an extra module
    assert isinstance(projections[0], torch.nn.Linear) and projections[0].weight.shape == (48, 32)
    p["loss_fn"](p["student"], p["train_set"].collate(list(range(8)))).backward()
    block = encoder_blocks(p["student"])[0]
    assert block.attention.self.query.weight.grad.abs().sum() > 0
    assert projections[0].weight.grad.abs().sum() > 0
    assert all(q.grad is None for q in p["teacher"].parameters())  # the teacher is frozen


def test_attention_term_alone_sends_gradients_to_the_student():
    p = _pair("binary", method="attention")
    assert p["extra"] == ()  # maps are [T, T] whatever the width: no projection
    student = p["student"]
    student.set_attn_implementation("eager")
    kd = FeatureKD(p["teacher"], p["teacher_set"], [1], torch.nn.ModuleList())
    batch = p["train_set"].collate(list(range(8)))
    out = _outputs(student, batch["input_ids"], batch["attention_mask"])
    attention_term(kd, out, kd.teacher_outputs(batch, "cpu", False, True), batch["attention_mask"]).backward()
    block = encoder_blocks(student)[0]
    assert block.attention.self.key.weight.grad.abs().sum() > 0  # through the maps only: no logit loss here
    assert block.output.dense.weight.grad is None  # after the maps of block 0: untouched


def test_fit_trains_the_projection_with_the_student():
    p = _pair("binary", n=60, method="multi_level")
    before = p["extra"][0][0].weight.detach().clone()
    val = Encoded(p["tok"], p["texts"][:20], None, 32)
    result = fit(p["student"], p["train_set"], val, p["y"][:20], task="binary", loss_fn=p["loss_fn"], epochs=1,
                 batch_size=16, lr=3e-3, patience=0, extra_modules=p["extra"])
    assert result["epochs_run"] == 1 and np.isfinite(result["history"][0]["train_loss"])
    assert not torch.equal(before, p["extra"][0][0].weight.detach().cpu())  # fit may have trained on a GPU


# --------------------------------------------------------------------------- padding is masked
def _outputs(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)


@pytest.mark.parametrize("attention_loss", ["mse", "kl"])
def test_padding_does_not_change_hidden_or_attention_loss(attention_loss):
    p = _pair("binary", method="multi_level")
    teacher, student = p["teacher"], p["student"].eval()
    student.set_attn_implementation("eager")
    batch = p["train_set"].collate([0, 1, 2, 3])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pad_id = p["tok"].pad_token_id
    padded_ids = torch.cat([ids, torch.full((4, 7), pad_id)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(4, 7, dtype=mask.dtype)], dim=1)
    kd = FeatureKD(teacher, p["teacher_set"], [1], make_projections(student, teacher, [1]), attention_loss)
    with torch.no_grad():
        short = [_outputs(m, ids, mask) for m in (student, teacher)]
        long = [_outputs(m, padded_ids, padded_mask) for m in (student, teacher)]
        for term in (hidden_term, attention_term):
            a, b = term(kd, *short, mask), term(kd, *long, padded_mask)
            assert torch.isfinite(a) and a > 0
            assert b.item() == pytest.approx(a.item(), rel=1e-5, abs=1e-7), term.__name__
        # The check has teeth: an unmasked mean over the padded tensors is a different number.
        s, t = kd.projections[0](long[0].hidden_states[1]), long[1].hidden_states[2]
        assert F.mse_loss(s, t).item() != pytest.approx(hidden_term(kd, *short, mask).item(), rel=1e-3)


# --------------------------------------------------------------------------- layer maps
def test_layer_maps():
    assert uniform_layer_map(2, 4) == [1, 3]
    assert uniform_layer_map(3, 12) == [3, 7, 11]
    assert uniform_layer_map(1, 2) == [1]
    assert resolve_layer_map([0, 2], 2, 4) == [0, 2]
    for bad in ([0], [0, 4], [0, -1], "0,1"):
        with pytest.raises(UserError, match="distill.layer_map"):
            resolve_layer_map(bad, 2, 4)


def test_custom_layer_map_is_used():
    p = _pair("binary", method="hidden", layer_map=[0])
    assert p["settings"]["layer_map"] == [0] and p["settings"]["projection_params"] == 48 * 32 + 48


# --------------------------------------------------------------------------- tokenizers
def test_feature_kd_with_different_tokenizers_is_a_clear_error():
    texts, y, meta = task_data("binary", 60)
    teacher_tok, student_tok = train_tokenizer(texts, 200, 32), train_tokenizer(texts, 40, 32)  # 52 vs 40 pieces
    teacher = build_scratch_with_tokenizer(TEACHER, meta, teacher_tok, 32)
    student = build_scratch_with_tokenizer(STUDENT, meta, student_tok, 32)
    teacher_set, train_set = Encoded(teacher_tok, texts, None, 32), Encoded(student_tok, texts, y, 32)
    assert teacher_set.input_ids != train_set.input_ids
    logits = torch.zeros(len(texts), 1)
    for method in ("hidden", "attention", "multi_level"):
        cfg = {"method": method, "alpha": 0.5, "temperature": 2.0}
        with pytest.raises(UserError, match="use distill.method=logit|Use distill.method=logit"):
            build_kd(cfg, "binary", logits, teacher=teacher, teacher_set=teacher_set, student=student,
                     student_set=train_set)
    # Logit KD works across tokenizers: each model got its own ids, rows are matched by index.
    loss_fn, extra, _ = build_kd({"method": "logit", "alpha": 0.5, "temperature": 2.0}, "binary", logits,
                                 teacher=teacher, teacher_set=teacher_set, student=student, student_set=train_set)
    assert extra == () and torch.isfinite(loss_fn(student, train_set.collate([0, 1, 2])))


@pytest.mark.parametrize("task, expected", [("multilabel", 1.0), ("binary", 0.7), ("multiclass", 0.7)])
def test_auto_alpha_is_the_number_for_the_task_in_the_loss_and_the_record(task, expected):
    """distill.alpha: auto computes the loss of the number AUTO_ALPHA gives the task, and records that number:
    on multi-label data no hard-label term at all (a wrong hard label changes the loss only when alpha < 1)."""
    texts, y, meta = task_data(task, 24)
    tok = train_tokenizer(texts, 200, 32)
    torch.manual_seed(0)
    student = build_scratch_with_tokenizer(STUDENT, meta, tok, 32, dropout=0.0)
    train_set = Encoded(tok, texts, y, 32)
    batch = train_set.collate(list(range(8)))
    flipped = {**batch, "labels": 1 - batch["labels"] if task != "multiclass" else (batch["labels"] + 1) % 3}
    logits = torch.randn(len(texts), y.shape[1] if task == "multilabel" else meta["num_labels"], generator=
                         torch.Generator().manual_seed(1))
    auto_fn, _, settings = build_kd({"method": "logit", "alpha": "auto", "temperature": 2.0}, task, logits)
    number_fn, _, _ = build_kd({"method": "logit", "alpha": expected, "temperature": 2.0}, task, logits)
    assert settings["alpha"] == expected
    assert torch.equal(auto_fn(student, batch), number_fn(student, batch))
    assert torch.equal(auto_fn(student, flipped), auto_fn(student, batch)) == (expected == 1.0)


@pytest.mark.parametrize("alpha", ["fast", True, 1.5, None])
def test_alpha_is_auto_or_a_number_in_0_1(alpha):
    with pytest.raises(UserError, match="distill.alpha=.* must be auto or a number in"):
        check_distill_params({"method": "logit", "alpha": alpha, "temperature": 2.0})
    check_distill_params({"method": "logit", "alpha": "auto", "temperature": 2.0})


# --------------------------------------------------------------------------- from_teacher
@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_from_teacher_copies_embeddings_every_kth_block_and_head(family):
    texts, _, meta = task_data("multilabel", 40)
    tok = train_tokenizer(texts, 200, 32)
    torch.manual_seed(1)
    teacher = build_scratch_with_tokenizer({**TEACHER, "family": family, "layers": 4}, meta, tok, 32)
    student, layers = student_from_teacher(teacher)
    assert layers == copied_layers(4, 2) == [0, 2]
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == teacher.config.hidden_size
    t_state, s_state = teacher.state_dict(), student.state_dict()
    non_block = [k for k in s_state if ".layer." not in k]
    assert any("embeddings" in k for k in non_block) and any("classifier" in k for k in non_block)
    for k in non_block:
        assert torch.equal(s_state[k], t_state[k]), k
    for i, t in enumerate(layers):
        for (name, a), (_, b) in zip(encoder_blocks(student)[i].state_dict().items(),
                                     encoder_blocks(teacher)[t].state_dict().items()):
            assert torch.equal(a, b), (i, t, name)
    # and nothing else: the student is exactly embeddings + copied blocks + head
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    # student.dropout, not the teacher's (copied with its config), and the teacher's config is left alone
    rates = lambda model: {v for k, v in model.config.to_dict().items() if k in DROPOUT_FIELDS}
    assert rates(student_from_teacher(teacher, 2, dropout=0.25)[0]) == {0.25} and rates(teacher) == {0.1}


def test_from_teacher_layers_are_checked():
    texts, _, meta = task_data("binary", 40)
    teacher = build_scratch_with_tokenizer(TEACHER, meta, train_tokenizer(texts, 200, 32), 32)
    assert student_from_teacher(teacher, 1)[1] == [0]
    with pytest.raises(UserError, match="student.from_teacher_layers"):
        student_from_teacher(teacher, 3)


# --------------------------------------------------------------------------- the stage
def test_distill_stage_multi_level_from_teacher_records_its_settings(repo, tmp_path):
    data = tmp_path / "synthetic.csv"
    synthetic_frame("binary", n=300).to_csv(data, index=False)
    params = tiny_params(data)
    params["teacher"].update(epochs=1)  # only the stage's wiring is under test here
    params["distill"].update(method="multi_level", epochs=1, alpha=0.5, temperature=2.0)
    params["student"].update(model="from_teacher", from_teacher_layers=1)
    write_params(repo, params)
    for stage in ("prepare", "train_teacher", "distill"):
        result = run_stage(repo, stage)
        assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((repo / "metrics" / "distill.json").read_text())
    assert metrics["method"] == "multi_level" and metrics["alpha"] == 0.5 and metrics["temperature"] == 2.0
    assert metrics["hidden_weight"] == 0.3 and metrics["attention_weight"] == 0.2
    assert metrics["student_start"] == "from_teacher" and metrics["copied_teacher_layers"] == [0]
    assert metrics["layer_map"] == [1] and metrics["projection_params"] == 0  # same width: no projection
    teacher_tok = json.loads((repo / "models" / "teacher" / "tokenizer.json").read_text())
    student_tok = json.loads((repo / "models" / "student" / "tokenizer.json").read_text())
    assert student_tok["model"]["vocab"] == teacher_tok["model"]["vocab"]


def test_an_option_the_method_does_not_take_is_an_error_that_names_it():
    """Every option used to be passed to every method and swallowed: a misspelt or misplaced one did nothing."""
    check_distill_params({"method": "hidden", "alpha": 0.5, "temperature": 2.0, "hidden_weight": 0.5})
    with pytest.raises(UserError, match=r"distill\.attention_weight=0.2 is set, but distill\.method=logit does not take"):
        check_distill_params({"method": "logit", "alpha": 0.5, "temperature": 2.0, "attention_weight": 0.2})
    with pytest.raises(UserError, match=r"distill\.hidden_weight=0.3 is set, but distill\.method=attention"):
        build_kd({"method": "attention", "alpha": 0.5, "temperature": 2.0, "hidden_weight": 0.3}, "binary",
                 torch.zeros(3, 1))
    assert set(KD_METHODS["multi_level"].options) == {"hidden_weight", "attention_weight", "attention_loss",
                                                      "layer_map"}


# --------------------------------------------------------------------------- transfer set (distill.transfer)
@pytest.fixture(scope="module")
def tiny_teacher_run(tmp_path_factory):
    """Prepared splits and a one-epoch tiny teacher, made by the stages' own functions."""
    work = tmp_path_factory.mktemp("transfer")
    data = work / "synthetic.csv"
    synthetic_frame("binary", n=300).to_csv(data, index=False)
    params = tiny_params(data)
    (work / "prepared").mkdir()
    prepare_splits(params["data"], 42, work / "prepared")
    train_teacher({**params["teacher"], "epochs": 1}, prepared=work / "prepared", out_dir=work / "teacher", seed=42,
                  max_length=32)
    return work, params


def _distill(work, params, corpus, transfer):
    cfg = {**params["distill"], "epochs": 1, "transfer": transfer}
    return train_student(cfg, params["student"], prepared=work / "prepared", teacher_dir=work / "teacher",
                         out_dir=work / f"student_{transfer}", seed=42, max_length=32, corpus=corpus)


def test_transfer_corpus_adds_its_non_train_texts_labelled_by_the_teacher(tiny_teacher_run):
    work, params = tiny_teacher_run
    train = load_split(work / "prepared", "train")[0]
    extra = [synthetic_frame("binary", n=60, seed=9)["Comments"].iloc[i] + " নতুন" for i in range(60)]
    corpus = work / "corpus.txt"
    corpus.write_text("".join(t + "\n" for t in train[:50] + extra), encoding="utf-8")  # train texts come once
    metrics = _distill(work, params, corpus, "corpus")
    assert metrics["transfer_rows"] == {"labelled": len(train), "teacher_labelled": len(set(extra))}
    assert _distill(work, params, corpus, "train")["transfer_rows"] == {"labelled": len(train), "teacher_labelled": 0}


def test_transfer_corpus_on_an_empty_corpus_is_an_error_that_says_why(tiny_teacher_run):
    work, params = tiny_teacher_run
    empty = work / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="distill.transfer=corpus, but .* is empty"):
        _distill(work, params, empty, "corpus")
    with pytest.raises(UserError, match="distill.transfer"):
        check_distill_params({"method": "logit", "alpha": 0.5, "temperature": 2.0, "transfer": "everything"})


@pytest.mark.parametrize("task", list(TASKS))
def test_teacher_labels_have_the_train_targets_shape_and_type(task):
    _, y, _ = task_data(task, n=12)
    k = TASKS[task][3]
    logits = np.random.default_rng(0).normal(size=(5, k)).astype(np.float32)
    labels = teacher_labels(task, logits, [0.5] * k if task != "multiclass" else None, y)
    assert labels.shape == (5, *y.shape[1:]) and labels.dtype == y.dtype
    expected = logits.argmax(1) if task == "multiclass" else (logits >= 0).astype(y.dtype)
    assert np.array_equal(labels, expected)


# --------------------------------------------------------------------------- two teachers (distill.tfidf_weight)
@pytest.mark.parametrize("task", list(TASKS))
def test_blend_tfidf_mixes_the_teacher_with_the_baseline_fitted_on_train_only(task):
    texts, y, _ = task_data(task, n=300)
    k = TASKS[task][3]
    teacher = np.random.default_rng(0).normal(size=(300, k)).astype(np.float32)  # a teacher that knows nothing
    train, rest = slice(0, 200), slice(200, 300)
    blend = {w: blend_tfidf(task, w, [(teacher, texts)], train_texts=texts[train], y_train=y[train], seed=0)[0]
             for w in (0.0, 0.5, 1.0)}
    assert blend[0.0] is teacher  # off: the teacher's logits, untouched
    assert blend[0.5].shape == teacher.shape and blend[0.5].dtype == teacher.dtype
    np.testing.assert_allclose(blend[0.5], (teacher + blend[1.0]) / 2, rtol=1e-5, atol=1e-5)
    # All TF-IDF: on the 100 texts it was not fitted on, the marker words decide, as they decide the labels.
    decided = blend[1.0][rest].argmax(1) if task == "multiclass" else (blend[1.0][rest] > 0).astype(np.float32)
    assert np.mean(decided == y[rest]) > 0.95
    # Fitted on the train texts and labels alone: the baseline's own fit on them, and nothing else, gives these.
    vectorizer, model = fit_tfidf_lr(task, texts[train], y[train], seed=0)
    np.testing.assert_allclose(blend[1.0], logits_of(task, predict_proba(task, vectorizer, model, texts)), atol=1e-5)


def test_tfidf_weight_is_checked_and_recorded():
    cfg = {"method": "logit", "alpha": 0.5, "temperature": 2.0}
    with pytest.raises(UserError, match=r"distill\.tfidf_weight=1\.5 is out of range"):
        check_distill_params({**cfg, "tfidf_weight": 1.5})
    assert kd_settings({**cfg, "tfidf_weight": 0.25})["tfidf_weight"] == 0.25
    assert kd_settings(cfg)["tfidf_weight"] == 0.0  # a params.yaml without the key: the teacher alone


class _Stop(Exception):
    pass


def _corpus_row_labels(work, params, monkeypatch, **cfg):
    """The hard labels train_student gives the unlabelled corpus rows (fit stopped before training)."""
    seen = {}

    def stop(student, train_set, *args, **kwargs):
        seen["targets"] = train_set.targets
        raise _Stop

    monkeypatch.setattr("banglacompress.distill.fit", stop)
    train = load_split(work / "prepared", "train")[0]
    extra = [t + " নতুন" for t in synthetic_frame("binary", n=80, seed=11)["Comments"]]
    corpus = work / "corpus_pseudo.txt"
    corpus.write_text("".join(t + "\n" for t in extra), encoding="utf-8")
    with pytest.raises(_Stop):
        train_student({**params["distill"], "epochs": 1, "transfer": "corpus", **cfg}, params["student"],
                      prepared=work / "prepared", teacher_dir=work / "teacher", out_dir=work / "unused", seed=42,
                      max_length=32, corpus=corpus)
    return train, extra, seen["targets"][len(train):]


def test_pseudo_labels_come_from_the_teacher_or_from_the_blended_targets(tiny_teacher_run, monkeypatch):
    """distill.pseudo_labels: teacher keeps the teacher's decisions on corpus rows whatever tfidf_weight is;
    targets decides with the soft targets (here all TF-IDF) at thresholds tuned on val for them."""
    work, params = tiny_teacher_run
    train, extra, teacher_only = _corpus_row_labels(work, params, monkeypatch, tfidf_weight=0.0)
    assert np.array_equal(_corpus_row_labels(work, params, monkeypatch, tfidf_weight=1.0,
                                             pseudo_labels="teacher")[2], teacher_only)
    # tfidf_weight 0: the soft targets are the teacher's logits, and their val-tuned thresholds the teacher's.
    assert np.array_equal(_corpus_row_labels(work, params, monkeypatch, tfidf_weight=0.0,
                                             pseudo_labels="targets")[2], teacher_only)
    from_targets = _corpus_row_labels(work, params, monkeypatch, tfidf_weight=1.0, pseudo_labels="targets")[2]
    y_train = load_split(work / "prepared", "train")[1]
    val_texts, y_val, _ = load_split(work / "prepared", "val")
    vectorizer, model = fit_tfidf_lr("binary", train, y_train, seed=42)
    thresholds = tune_thresholds("binary", y_val, predict_proba("binary", vectorizer, model, val_texts))
    expected = (predict_proba("binary", vectorizer, model, extra) >= np.asarray(thresholds)).astype(y_train.dtype)
    assert np.array_equal(from_targets, expected)
    assert not np.array_equal(from_targets, teacher_only)  # the one-epoch teacher and TF-IDF disagree somewhere
    with pytest.raises(UserError, match="distill.pseudo_labels"):
        check_distill_params({"method": "logit", "alpha": 0.5, "temperature": 2.0, "pseudo_labels": "tfidf"})


def test_distill_with_tfidf_weight_trains_and_records_the_weight(tiny_teacher_run):
    """The stage function end to end with soft targets blended."""
    work, params = tiny_teacher_run
    cfg = {**params["distill"], "epochs": 1, "transfer": "train", "tfidf_weight": 0.5}
    metrics = train_student(cfg, params["student"], prepared=work / "prepared", teacher_dir=work / "teacher",
                            out_dir=work / "student_tfidf", seed=42, max_length=32)
    assert metrics["tfidf_weight"] == 0.5 and (work / "student_tfidf" / "config.json").exists()
