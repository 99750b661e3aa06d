"""Pruning methods on tiny random-init models of every supported family: achieved sparsity, the
Wanda rule, gradual schedules, structured shrinking (the multiply-adds it removes), save / reload.
Speed is measured by bench/bench_prune.py, not here."""
import copy
import json

import numpy as np
import pytest
import torch

from banglacompress.data import Encoded, load_split, make_loader
from banglacompress.models import (PRUNED_SHAPES_KEY, SCRATCH_FAMILIES, build_model, count_params, encoder_blocks,
                                   encoder_linears,
                                   from_pretrained_pruned, load_model_dir, save_model_dir)
from banglacompress.data import sample_batches
from banglacompress.config import UserError
import banglacompress.prune as prune_module
from banglacompress.prune import (PRUNE_METHODS, SCHEDULES, GradualPruner, PruneContext, _masks_from_scores,
                                  check_prune_params, prune_and_heal,
                                  heal, input_sq_norms, prunable_layers, schedule_sparsity, start_pruning,
                                  wanda_scores)
from banglacompress.train import label_loss, predict_logits
from conftest import TINY_ARCH, synthetic_frame, task_data, tiny_params, write_params, run_stage

torch.set_num_threads(1)

META = {"task": "binary", "label_names": ["HateSpeech"], "num_labels": 1}
FRAME = synthetic_frame("binary", n=200)
TEXTS, Y = FRAME.Comments.tolist(), FRAME[["HateSpeech"]].to_numpy(np.float32)
FAMILIES = list(SCRATCH_FAMILIES)


def _model(family="bert", **arch):
    torch.manual_seed(0)
    model, tok = build_model("m", {"model": "scratch", "scratch": dict(TINY_ARCH, family=family, **arch)}, META,
                             TEXTS, 32)
    return model.eval(), tok


def _data(tok):
    return Encoded(tok, TEXTS[:150], Y[:150], 32), Encoded(tok, TEXTS[150:], None, 32)


def _ctx(tok, train):
    return PruneContext(calib=sample_batches(tok, TEXTS[:150], Y[:150], 64, 16, 32, seed=42), task="binary",
                        total_steps=len(make_loader(train, 16, shuffle=True)))


def _prune(model, method, sparsity, tok, train, scope="all", **options):
    """start_pruning with calibration batches and healing steps; gradual prunes every 3 steps."""
    if method == "gradual":
        options.setdefault("frequency", 3)
    return start_pruning(model, method, sparsity, scope, _ctx(tok, train), **options)


def _heal(model, pruner, train, val, epochs=1):
    return heal(model, pruner, train, val, Y[150:], task="binary", loss_fn=label_loss("binary", None),
                epochs=epochs, batch_size=16, lr=0.01, patience=0)


# --------------------------------------------------------------------------- every method, every family
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", list(PRUNE_METHODS))
def test_every_method_hits_the_target_before_and_after_healing(family, method):
    model, tok = _model(family, heads=4)
    untouched = {n: p.clone() for n, p in model.named_parameters()
                 if "embeddings" in n or "classifier" in n or "pooler" in n}
    train, val = _data(tok)
    pruner = _prune(model, method, 0.5, tok, train)
    # Embeddings and the classification head are never pruned unless asked for (they train while healing).
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in untouched.items())
    # gradual starts dense and reaches the target during fine-tuning; the others prune at once.
    expected_now = 0.0 if method == "gradual" else 0.5
    assert pruner.report(model)["sparsity"] == pytest.approx(expected_now, abs=0.01)
    _heal(model, pruner, train, val)
    report = pruner.report(model)
    assert report["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert set(report["per_layer"]) == set(prunable_layers(model))
    if method != "structured":
        for n, layer in prunable_layers(model).items():
            assert (layer.weight == 0).float().mean() > 0.2, n  # no layer escaped


@pytest.mark.parametrize("method", ["magnitude", "wanda", "gradual"])
def test_head_and_embeddings_are_pruned_only_when_asked(method):
    model, tok = _model()
    train, _ = _data(tok)
    plain = _prune(model, method, 0.5, tok, train)
    assert not any("classifier" in n or "pooler" in n or "embeddings" in n for n in plain.names)
    model, tok = _model()
    extra = {} if method == "wanda" else {"include_embeddings": True}  # wanda scores activations: no tables
    asked = _prune(model, method, 0.5, tok, train, include_head=True, **extra)
    assert "classifier" in asked.names and "bert.pooler.dense" in asked.names
    assert ("bert.embeddings.word_embeddings" in asked.names) == (method != "wanda")


# --------------------------------------------------------------------------- wanda
def test_wanda_scores_match_a_hand_computed_example():
    w = torch.tensor([[1.0, -2.0, 3.0],
                      [4.0, 0.5, -1.0]])
    # Calibration tokens (padding already excluded): feature norms ||X_j||_2 = 1, 4, 0.5.
    x = torch.tensor([[1.0, 0.0, 0.3],
                      [0.0, 4.0, 0.4]])
    sq = x.pow(2).sum(0)
    scores = wanda_scores(w, sq)
    assert torch.allclose(scores, torch.tensor([[1.0, 8.0, 1.5],
                                                [4.0, 2.0, 0.5]]))
    mask = _masks_from_scores({"w": scores}, 1 / 3, "row")["w"]
    # Per output row, the lowest |W|*||X||: row 0 drops column 0; row 1 drops column 2, although
    # magnitude alone would drop column 1 (|0.5|): its input feature is large.
    assert mask.tolist() == [[False, True, True], [True, True, False]]


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(4, 2)
        self.lin = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.emb.weight.copy_(torch.tensor([[100.0, 100.0], [1.0, 2.0], [3.0, 0.0], [0.0, 1.0]]))

    def forward(self, input_ids, attention_mask):
        return self.lin(self.emb(input_ids))


def test_wanda_norms_exclude_padding():
    batch = {"input_ids": torch.tensor([[1, 2, 0], [3, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]])}
    toy = _Toy()
    sq = input_sq_norms(toy, {"lin": toy.lin}, [batch])["lin"]
    # tokens 1, 2, 3: [1,2], [3,0], [0,1]; the pad embedding (100, 100) must not count.
    assert sq.tolist() == [1.0 + 9.0, 4.0 + 1.0]


def test_wanda_on_a_model_uses_the_first_blocks_real_inputs():
    model, tok = _model()
    calib = sample_batches(tok, TEXTS[:150], Y[:150], 40, 8, 32, seed=42)
    query = model.bert.encoder.layer[0].attention.self.query
    with torch.no_grad():  # block 0 sees the embeddings' output, summed over non-padding tokens
        sq = sum(model.bert.embeddings(input_ids=b["input_ids"])[b["attention_mask"].bool()].double().pow(2).sum(0)
                 for b in calib)
    expected = _masks_from_scores({"q": wanda_scores(query.weight, sq)}, 0.5, "row")["q"]
    pruner = start_pruning(model, "wanda", 0.5, ctx=PruneContext(calib=calib))
    assert torch.equal(pruner.masks["bert.encoder.layer.0.attention.self.query"], expected)
    # Compared within each output row: every row loses exactly half its weights.
    assert ((query.weight == 0).sum(1) == query.in_features // 2).all()


# --------------------------------------------------------------------------- gradual
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_hit_their_endpoints_and_are_monotonic(schedule):
    values = [schedule_sparsity(t, 0.8, 10, 110, schedule) for t in range(0, 131)]
    assert values[0] == values[10] == 0.0
    assert values[110] == values[130] == 0.8
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert 0.0 < values[60] < 0.8


def test_cubic_schedule_is_zhu_and_gupta():
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3
    assert schedule_sparsity(50, 0.5, 0, 100, "cubic") == pytest.approx(0.5 - 0.5 * 0.5 ** 3)
    assert schedule_sparsity(50, 0.5, 0, 100, "cubic") > schedule_sparsity(50, 0.5, 0, 100, "linear")


def test_gradual_masks_change_only_on_pruning_steps_and_end_at_the_target():
    model, _ = _model()
    pruner = start_pruning(model, "gradual", 0.6, ctx=PruneContext(total_steps=25), start_step=2, end_step=20,
                           frequency=5)
    assert isinstance(pruner, GradualPruner)
    seen = []
    for step in range(1, 26):
        pruner.after_step(model)
        seen.append(pruner.report(model)["sparsity"])
        pruner.check(model, f"step {step}")
    changes = [i + 1 for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert set(changes) <= {7, 12, 17, 20}
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    assert seen[-1] == pytest.approx(0.6, abs=0.01)


def test_gradual_never_restores_an_epoch_before_the_target():
    model, tok = _model()
    train, val = _data(tok)
    steps = len(make_loader(train, 16, shuffle=True))
    pruner = start_pruning(model, "gradual", 0.7, ctx=PruneContext(total_steps=3 * steps), start_step=0,
                           end_step=steps + 2, frequency=2)
    result = _heal(model, pruner, train, val, epochs=3)
    assert result["epochs_run"] == 3 and len(result["history"]) == 3
    assert pruner.report(model)["sparsity"] == pytest.approx(0.7, abs=0.01)


def test_gradual_rejects_an_end_after_fine_tuning():
    model, _ = _model()
    with pytest.raises(Exception, match="end_step"):
        start_pruning(model, "gradual", 0.5, ctx=PruneContext(total_steps=10), end_step=50)


# --------------------------------------------------------------------------- structured
@pytest.mark.parametrize("family", FAMILIES)
def test_structured_shrinks_and_reloads_with_the_same_predictions(tmp_path, family):
    model, tok = _model(family, heads=4, layers=2)
    train, val = _data(tok)
    before = count_params(model)["params"]
    pruner = _prune(model, "structured", 0.5, tok, train)
    _heal(model, pruner, train, val)
    report = pruner.report(model)
    assert report["heads_kept"] == [2, 2] and report["intermediate_kept"] == [32, 32]
    assert count_params(model)["params"] < before
    assert getattr(model.config, PRUNED_SHAPES_KEY) == {"heads": [2, 2], "intermediate": [32, 32]}
    info = {"task": "binary", "label_names": ["HateSpeech"], "thresholds": [0.5], "max_length": 32}
    save_model_dir(tmp_path, model, tok, info)
    assert json.loads((tmp_path / "config.json").read_text())[PRUNED_SHAPES_KEY]["heads"] == [2, 2]
    reloaded = from_pretrained_pruned(tmp_path)
    assert count_params(reloaded)["params"] == count_params(model)["params"]
    # Bit for bit on the same device (the healing fit may have left the model on a GPU; reloaded is on CPU)
    assert np.array_equal(predict_logits(model.cpu(), val), predict_logits(reloaded, val))


@pytest.mark.parametrize("importance", ["taylor", "weight"])
def test_structured_removes_the_dead_head_and_neurons(importance):
    model, tok = _model(heads=4, layers=1)
    train, _ = _data(tok)
    block = model.bert.encoder.layer[0]
    d = block.attention.self.attention_head_size
    with torch.no_grad():  # head 1 and FFN neurons 0..31 contribute nothing
        for lin in (block.attention.self.query, block.attention.self.key, block.attention.self.value):
            lin.weight[d: 2 * d] = 0
            lin.bias[d: 2 * d] = 0
        block.attention.output.dense.weight[:, d: 2 * d] = 0
        block.intermediate.dense.weight[:32] = 0
        block.output.dense.weight[:, :32] = 0
    keep_q = torch.cat([block.attention.self.query.weight[:d], block.attention.self.query.weight[2 * d:]]).clone()
    _prune(model, "structured", 0.25, tok, train, ffn_sparsity=0.5, importance=importance)
    block = encoder_blocks(model)[0]
    assert torch.equal(block.attention.self.query.weight, keep_q)  # heads 0, 2, 3 kept, in order
    assert block.intermediate.dense.out_features == 32
    assert (block.intermediate.dense.weight.abs().sum(1) > 0).all()


def test_structured_attention_scope_keeps_the_ffn():
    model, tok = _model(heads=4)
    train, _ = _data(tok)
    pruner = _prune(model, "structured", 0.5, tok, train, scope="attention")
    assert pruner.report(model)["heads_kept"] == [2] and pruner.report(model)["intermediate_kept"] == [64]
    assert pruner.report(model)["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_structured_halves_the_encoders_multiply_adds():
    """What makes structured pruning faster (bench/bench_prune.py times it; a unit test does not): the
    encoder's matrices really shrink. 50% of heads and FFN neurons -> half the encoder multiply-adds
    per token; unstructured methods leave every shape as it was."""
    def macs(model):
        return sum(m.in_features * m.out_features for m in encoder_linears(model).values())

    torch.manual_seed(0)
    arch = {"model": "scratch", "scratch": {"family": "bert", "layers": 2, "hidden": 64, "heads": 4, "ffn": 256,
                                            "vocab_size": 300}}
    dense, _ = build_model("m", arch, META, TEXTS, 64)
    pruned = copy.deepcopy(dense)
    start_pruning(pruned, "structured", 0.5, importance="weight")
    assert macs(pruned) == pytest.approx(0.5 * macs(dense), rel=0.01)
    masked = copy.deepcopy(dense)
    start_pruning(masked, "magnitude", 0.5)
    assert macs(masked) == macs(dense)


# --------------------------------------------------------------------------- the stage
@pytest.fixture(scope="module")
def student_repo(tmp_path_factory):
    """A repo copy with prepared data, a teacher and a student (tiny), shared by the stage tests."""
    import shutil
    from conftest import ROOT
    dest = tmp_path_factory.mktemp("prune_stage") / "repo"
    dest.mkdir()
    for item in ("stages", "banglacompress", "dvc.yaml", "params.yaml"):
        src = ROOT / item
        (shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, dest / item))
    data = dest / "synthetic.csv"
    synthetic_frame("binary", n=600).to_csv(data, index=False)
    write_params(dest, tiny_params(data))
    for stage in ("prepare", "train_teacher", "distill"):
        result = run_stage(dest, stage)
        assert result.returncode == 0, result.stderr[-3000:]
    return dest


@pytest.mark.parametrize("overrides", [
    {"method": "structured", "kd_alpha": 0.5},
    {"method": "gradual", "schedule": "cubic", "frequency": 5},
    {"method": "wanda", "calib_samples": 64},
], ids=lambda o: o["method"])
def test_prune_stage_writes_honest_metrics(student_repo, overrides):
    params = tiny_params(student_repo / "synthetic.csv")
    params["prune"].update(overrides)
    write_params(student_repo, params)
    result = run_stage(student_repo, "prune")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((student_repo / "metrics" / "prune.json").read_text())
    assert metrics["method"] == overrides["method"]
    assert metrics["sparsity"] == pytest.approx(0.5, abs=0.01)
    for key in ("size_bytes", "gzip_bytes"):
        assert metrics[key] > 0
    assert not any("latency" in key or "speedup" in key for key in metrics)  # timings: evaluate, metrics/speed.json
    assert metrics["structured"] == (overrides["method"] == "structured")
    if overrides["method"] == "structured":
        assert metrics["size_bytes"] < metrics["student_size_bytes"]
        assert metrics["heads_kept"] == [1]  # the tiny student has 2 heads
    else:
        assert metrics["gzip_bytes"] < metrics["student_gzip_bytes"]


def test_prune_stage_refuses_an_option_the_method_does_not_take(student_repo):
    """A gradual-only option left set while switching to wanda was silently swallowed by `**_` before."""
    params = tiny_params(student_repo / "synthetic.csv")
    params["prune"].update(method="wanda", frequency=5)
    write_params(student_repo, params)
    result = run_stage(student_repo, "prune")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: prune: prune.frequency=5 is set, but prune.method=wanda does not take it (it takes: include_head); "
        "set it to null")


@pytest.mark.parametrize("source", ["student", "teacher"])
def test_healing_distils_from_the_model_kd_from_names(student_repo, tmp_path, monkeypatch, source):
    """kd_from=student: healing's soft targets are the student's logits taken before pruning (structured pruning
    then removes half of each block, and the pruned model's logits differ); kd_from=teacher: the teacher's."""
    seen = {}
    real = prune_module.logit_kd

    def spy(task, logits, **options):
        seen["logits"] = logits.numpy().copy()
        return real(task, logits, **options)

    monkeypatch.setattr(prune_module, "logit_kd", spy)
    params = tiny_params(student_repo / "synthetic.csv")
    cfg = dict(params["prune"], method="structured", kd_alpha=0.5, kd_from=source)
    models, max_length = student_repo / "models", params["data"]["max_length"]
    prune_and_heal(cfg, prepared=student_repo / "data" / "prepared", student_dir=models / "student",
                   teacher_dir=models / "teacher", out_dir=tmp_path / "pruned", seed=42, max_length=max_length)
    texts, _, _ = load_split(student_repo / "data" / "prepared", "train")
    logits = {}
    for name in ("student", "teacher"):
        model, tok, _ = load_model_dir(models / name)
        logits[name] = predict_logits(model, Encoded(tok, texts, None, max_length))
    other = "teacher" if source == "student" else "student"
    np.testing.assert_allclose(seen["logits"], logits[source], atol=1e-5)
    assert not np.allclose(seen["logits"], logits[other], atol=1e-3)


def test_the_prune_stage_encodes_val_once(student_repo, tmp_path, monkeypatch):
    """The stage encoded the val texts twice, once for healing and once for thresholds and the reload check."""
    val_texts, _, _ = load_split(student_repo / "data" / "prepared", "val")
    encoded = []
    real = prune_module.Encoded
    monkeypatch.setattr(prune_module, "Encoded", lambda tok, texts, *a, **k: encoded.append(list(texts)) or real(
        tok, texts, *a, **k))
    params = tiny_params(student_repo / "synthetic.csv")
    models = student_repo / "models"
    prune_and_heal(dict(params["prune"], method="structured"), prepared=student_repo / "data" / "prepared",
                   student_dir=models / "student", teacher_dir=models / "teacher", out_dir=tmp_path / "pruned",
                   seed=42, max_length=params["data"]["max_length"])
    assert encoded.count(list(val_texts)) == 1


def test_kd_from_takes_auto_teacher_or_student_only():
    base = {"method": "structured", "sparsity": 0.5, "fine_tune_epochs": 1, "lr": 1e-3, "batch_size": 8}
    check_prune_params({**base, "kd_from": "student"})
    check_prune_params({**base, "kd_from": "auto"})
    with pytest.raises(UserError,
                       match=r"prune\.kd_from='pruned' is not supported; choose one of: auto, teacher, student"):
        check_prune_params({**base, "kd_from": "pruned"})


@pytest.mark.parametrize("kd_alpha", ["fast", True, 1.5, None])
def test_kd_alpha_is_auto_or_a_number_in_0_1(kd_alpha):
    base = {"method": "structured", "sparsity": 0.5, "fine_tune_epochs": 1, "lr": 1e-3, "batch_size": 8}
    check_prune_params({**base, "kd_alpha": "auto"})
    with pytest.raises(UserError, match=r"prune\.kd_alpha=.* is out of range; it must be auto or a number in"):
        check_prune_params({**base, "kd_alpha": kd_alpha})


@pytest.mark.parametrize("task, source, alpha", [("multilabel", "student", 1.0), ("binary", "teacher", 0.7),
                                                 ("multiclass", "teacher", 0.7)])
def test_auto_healing_distils_from_the_source_at_the_weight_for_the_task(monkeypatch, task, source, alpha):
    """prune.kd_from / prune.kd_alpha auto: healing takes its soft targets from the model AUTO_HEALING names for the
    task, weighs them as it says, and the stage's record holds those values, not the word auto."""
    texts, y, meta = task_data(task, 48)
    k = meta["num_labels"]
    torch.manual_seed(0)
    model, tok = build_model("m", {"model": "scratch", "scratch": dict(TINY_ARCH)}, meta, texts, 32)
    seen = {}
    monkeypatch.setattr(prune_module, "kd_targets", lambda cfg, model, tok, teacher_dir, rows, max_length: (
        seen.setdefault("kd_from", cfg["kd_from"]), torch.zeros(len(rows), k))[1])
    real = prune_module.logit_kd
    monkeypatch.setattr(prune_module, "logit_kd", lambda task, logits, **options: (
        seen.setdefault("kd_alpha", options["alpha"]), real(task, logits, **options))[1])
    cfg = {"method": "structured", "sparsity": 0.5, "fine_tune_epochs": 1, "lr": 1e-3, "batch_size": 16,
           "kd_from": "auto", "kd_alpha": "auto"}
    done, _ = prune_module.prune_model(cfg, model, tok, train=(texts, y), val=(Encoded(tok, texts, None, 32), y),
                                       task=task, teacher_dir="unused", seed=0, max_length=32)
    assert seen == {"kd_from": source, "kd_alpha": alpha}
    assert (done["kd_from"], done["kd_alpha"]) == (source, alpha)


def test_an_option_the_method_does_not_take_is_an_error_that_names_it():
    """Every option used to reach every method and be swallowed by `**_`: a misplaced one did nothing."""
    base = {"method": "wanda", "sparsity": 0.5, "fine_tune_epochs": 1, "lr": 1e-3, "batch_size": 8}
    check_prune_params(base)
    with pytest.raises(UserError, match=r"prune\.frequency=5 is set, but prune\.method=wanda does not take it "
                                        r"\(it takes: include_head\)"):
        check_prune_params({**base, "frequency": 5})
    with pytest.raises(UserError, match=r"prune\.granularity='row' is set, but prune\.method=structured"):
        start_pruning(_model()[0], "structured", 0.5, granularity="row")
    assert PRUNE_METHODS["structured"].structured and not PRUNE_METHODS["magnitude"].structured
