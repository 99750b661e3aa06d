"""bench/bench_teacher.py: the paired summary of a one-param teacher sweep on hand-made rows (every number
known), the lr-only records it used to write read in today's terms, a bad --values refused in one line, and a
param of the encoder's shape or its pretraining (scratch.*, pretrain.*) pretrained for each value but the default,
end to end on a tiny model."""
import json
import shutil
import sys

import pytest
import yaml

from banglacompress.config import load_params
from banglacompress.data import prepare_splits
from bench import bench_teacher, run_bench
from conftest import ROOT, synthetic_frame, tiny_params, write_params


def _row(seed, value, val, test=0.8):
    return {"seed": seed, "value": value, "val_macro_f1": val, "test_macro_f1": test, "best_epoch": 3,
            "epochs_run": 5, "seconds": 60.0}


# epochs 12 beats the default 6 by 0.02, 0.015, 0.025 on val: +0.02 ± 0.005 paired, while the seeds' own spread
# (0.70, 0.80, 0.90) is twenty times larger: the pairing is what makes it readable.
ROWS = [_row(42, 6, 0.70), _row(42, 12, 0.72), _row(43, 6, 0.80), _row(43, 12, 0.815), _row(44, 6, 0.90),
        _row(44, 12, 0.925)]


def test_summary_pairs_each_value_with_the_default_within_a_seed():
    result = bench_teacher.summarize(ROWS, 6)
    change = result["summary"]["12"]["val_change_vs_default"]
    assert change["mean"] == pytest.approx(0.02) and change["std"] == pytest.approx(0.005)
    assert result["summary"]["6"]["val_macro_f1"]["std"] == pytest.approx(0.1)
    assert "val_change_vs_default" not in result["summary"]["6"] and result["best_on_val"] == 12
    header = {"param": "epochs", "default": 6, "runs": [{"seed": s} for s in (42, 43, 44)], "work": "w",
              "command": "c", "machine": {"cpu": "x"}}
    text = bench_teacher.render({"header": header, "rows": ROWS, **result})
    assert "| 12 | 0.8200 ± 0.1026 | +0.0200 ± 0.0050 |" in text and "is outside seed noise." in text
    # +0.02 ± 0.01 (0.02, 0.01, 0.03): the mean is not more than 2 std from zero, so it is seed noise
    rows = [*ROWS[:3], {**ROWS[3], "val_macro_f1": 0.81}, ROWS[4], {**ROWS[5], "val_macro_f1": 0.93}]
    text = bench_teacher.render({"header": header, "rows": rows, **bench_teacher.summarize(rows, 6)})
    assert "+0.0200 ± 0.0100 |" in text and "is seed noise: the default stays." in text


def test_a_record_of_the_lr_only_form_is_read_in_todays_terms():
    old = {"header": {"command": "python -m bench.bench_teacher_lr --lrs 0.0002 0.0001 --work w --seeds 42",
                      "default_lr": 0.0002, "runs": [{"seed": 42}], "machine": {"cpu": "x"}},
           "rows": [{"seed": 42, "lr": 0.0002, "val_macro_f1": 0.8}, {"seed": 42, "lr": 0.0001, "val_macro_f1": 0.81}]}
    new = bench_teacher.upgrade(old)
    assert new["header"]["param"] == "lr" and new["header"]["default"] == 0.0002
    assert new["header"]["command"] == ("python -m bench.bench_teacher --param lr --values 0.0002 0.0001 --work w "
                                        "--seeds 42 --out bench/teacher_lr")
    assert [(r["seed"], r["value"]) for r in new["rows"]] == [(42, 0.0002), (42, 0.0001)]
    assert bench_teacher.upgrade(new) is new


@pytest.mark.parametrize("values", [[], ["six"], ["true"]])
def test_values_that_are_not_numbers_stop_with_one_line(values, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_teacher", "--param", "epochs", "--values", *values])
    with pytest.raises(SystemExit) as stop:
        bench_teacher.main()
    assert stop.value.code != 0
    if values:
        assert str(stop.value.code).startswith("error: give --values, numbers for teacher.epochs")


@pytest.mark.parametrize("param, values, words", [
    ("scratch.tokenizer_model", ["wordpiece"], "unigram bpe"),
    ("scratch.tokenizer_model", ["bpe", "8000"], "unigram bpe"),
    ("pooling", ["attention"], "cls mean max"), ("pooling", ["max", "0.5"], "cls mean max"),
    ("loss", ["hinge"], "auto bce ce focal")])
def test_a_word_param_takes_only_its_words(param, values, words, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_teacher", "--param", param, "--values", *values])
    with pytest.raises(SystemExit) as stop:
        bench_teacher.main()
    assert str(stop.value.code) == f"error: give --values, some of {words} for teacher.{param}"


def test_the_pooling_sweep_sets_the_teachers_pooling():
    params = load_params(ROOT / "params.yaml")
    assert bench_teacher.value_of(params, "pooling") == params["teacher"]["pooling"]
    assert bench_teacher.with_value(params, "pooling", "max")["teacher"]["pooling"] == "max"


def test_a_word_valued_sweep_renders_its_words():
    rows = [_row(42, "unigram", 0.78), _row(42, "bpe", 0.79)]
    result = bench_teacher.summarize(rows, "unigram")
    header = {"param": "scratch.tokenizer_model", "default": "unigram", "runs": [{"seed": 42}], "work": "w",
              "command": "c", "machine": {"cpu": "x"}}
    rows[0].update(pretrain_seconds=800.0, final_val_perplexity=700.0)
    rows[1].update(pretrain_seconds=810.0, final_val_perplexity=650.0)
    text = bench_teacher.render({"header": header, "rows": rows, **result})
    assert "(teacher.scratch.tokenizer_model unigram)" in text
    assert "| bpe | 0.7900 ± 0.0000 | +0.0100 ± 0.0000 |" in text and "Best on mean val: **bpe**." in text
    assert bench_teacher.value_of(load_params(ROOT / "params.yaml"), "scratch.tokenizer_model") == "unigram"
    assert bench_teacher.value_of({"teacher": {"scratch": {}}, "pretrain": {}}, "scratch.tokenizer_model") == "unigram"


def _finished_run(run, params):
    """A make-bench run directory as run_bench leaves it after train_teacher (no real model needed)."""
    for item in run_bench.CODE:
        if item != "params.yaml":
            (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, run / item)
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    (run / "metrics").mkdir()
    (run / "metrics" / "train_teacher.json").write_text(json.dumps({"val_macro_f1_tuned": 0.84, "best_epoch": 3,
                                                                    "epochs_run": 5}))
    (run / run_bench.RUN_FILE).write_text(json.dumps({"stages": {"train_teacher": {"seconds": 146.0}},
                                                      "result": {"rows": {"teacher": {"macro_f1": 0.82}}}}))


def test_the_runs_own_teacher_is_reused_only_when_it_is_the_same_computation(tmp_path):
    params = {**load_params(ROOT / "params.yaml"), "seed": 43}
    run = tmp_path / "seed43"
    run.mkdir()
    _finished_run(run, params)
    row = run_bench.run_teacher_scores(run, params["teacher"], params, 43)
    assert row == {"val_macro_f1": 0.84, "test_macro_f1": 0.82, "best_epoch": 3, "epochs_run": 5, "seconds": 146.0,
                   "from_run": str(run)}
    assert run_bench.run_teacher_scores(run, {**params["teacher"], "epochs": 99}, params, 43) is None  # another value
    assert run_bench.run_teacher_scores(run, params["teacher"], params, 42) is None                    # another seed
    assert run_bench.run_teacher_scores(run, params["teacher"], {**params, "threads": 1}, 43) is None
    module = run / "banglacompress" / "train.py"
    original = module.read_text(encoding="utf-8")
    module.write_text(original + "# edited\n", encoding="utf-8")
    assert run_bench.run_teacher_scores(run, params["teacher"], params, 43) is None                    # other code
    assert run_bench.run_teacher_scores(run, params["teacher"], params, 43, teacher_code_only=True) is None
    module.write_text(original, encoding="utf-8")
    # a change to a later stage's code leaves the teacher the same computation, when asked for the teacher's code only
    later = run / "banglacompress" / "prune.py"
    later.write_text(later.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    assert run_bench.run_teacher_scores(run, params["teacher"], params, 43) is None
    assert run_bench.run_teacher_scores(run, params["teacher"], params, 43, teacher_code_only=True) == row
    (run / run_bench.RUN_FILE).write_text(json.dumps({"cpu": "another CPU type", "stages": {}, "result": {}}))
    assert run_bench.run_teacher_scores(run, params["teacher"], params, 43) is None                    # other CPU


def test_a_scratch_param_is_pretrained_for_each_value_but_the_default(tmp_path, monkeypatch):
    """scratch.layers 1 (the default, from the given encoder) against 2: the 2-layer encoder is pretrained by the
    pretrain stage's function on data/pretrain_corpus.txt, then fine-tuned; the row and the table say so."""
    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "data.csv"
    synthetic_frame("binary", n=200).to_csv(csv, index=False)
    params = tiny_params(csv)
    params["teacher"].update(scratch={**params["teacher"]["scratch"], "layers": 1}, epochs=1)
    write_params(tmp_path, params)
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    prepare_splits(params["data"], 0, tmp_path / "data" / "prepared")
    texts = list(synthetic_frame("binary", n=200, seed=1)["Comments"])
    (tmp_path / "data" / "pretrain_corpus.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    default = bench_teacher.pretrain_value(params, tmp_path / "data" / "pretrain_corpus.txt",
                                           tmp_path / "models" / "pretrained", seed=params["seed"])
    assert default["dir"] == str(tmp_path / "models" / "pretrained") and default["final_val_perplexity"] > 1
    assert json.loads((tmp_path / "models" / "pretrained" / "config.json").read_text())["num_hidden_layers"] == 1

    # --set: a pretrain param reaches the pretraining done here, a teacher param every fine-tune
    pretrained_with, tuned_with = [], []
    real_pretrain, real_tune = bench_teacher.pretrain_mlm, bench_teacher.fine_tune_and_score
    monkeypatch.setattr(bench_teacher, "pretrain_mlm",
                        lambda cfg, **kw: pretrained_with.append(cfg) or real_pretrain(cfg, **kw))
    monkeypatch.setattr(bench_teacher, "fine_tune_and_score",
                        lambda cfg, *a, **kw: tuned_with.append(cfg) or real_tune(cfg, *a, **kw))
    monkeypatch.setattr(sys, "argv", ["bench_teacher", "--param", "scratch.layers", "--values", "1", "2",
                                      "--set", "pretrain.epochs=2", "--set", "teacher.weight_decay=0.02",
                                      "--out", str(tmp_path / "out")])
    bench_teacher.main()
    assert [c["epochs"] for c in pretrained_with] == [2] and params["pretrain"].get("epochs") != 2
    # a value whose pretraining stalls is scored, not stopped: the stall is the sweep's result
    assert [c["min_context_gain"] for c in pretrained_with] == [None]
    assert [c["weight_decay"] for c in tuned_with] == [0.02, 0.02]
    result = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert result["header"]["overrides"] == {"pretrain.epochs": 2, "teacher.weight_decay": 0.02}
    assert "Overridden here (`--set`" in (tmp_path / "out.md").read_text(encoding="utf-8")
    one, two = result["rows"]
    assert result["header"]["default"] == 1 and (one["value"], two["value"]) == (1, 2)
    assert "pretrain_seconds" not in one and two["pretrain_seconds"] > 0 and two["final_val_perplexity"] > 1
    assert "val_change_vs_default" in result["summary"]["2"]
    text = (tmp_path / "out.md").read_text(encoding="utf-8")
    assert "| pretraining seconds / final val perplexity |" in text and "| given encoder |" in text
    assert "one seed: no seed spread to judge it against" in text or result["best_on_val"] == 1


def test_a_pretrain_param_sets_the_pretrain_group_and_a_scratch_param_the_teachers_shape():
    params = load_params(ROOT / "params.yaml")
    masked = bench_teacher.with_value(params, "pretrain.mask_prob", 0.4)
    assert masked["pretrain"]["mask_prob"] == 0.4 and masked["teacher"] == params["teacher"]
    assert params["pretrain"]["mask_prob"] == 0.15  # the given params are not changed
    deeper = bench_teacher.with_value(params, "scratch.layers", 6)
    assert deeper["teacher"]["scratch"]["layers"] == 6 and deeper["pretrain"] == params["pretrain"]
    assert params["teacher"]["scratch"]["layers"] == 4
    assert bench_teacher.with_value(params, "lr", 0.001)["teacher"]["lr"] == 0.001
    wider = bench_teacher.with_value(params, "scratch.hidden", 384)["teacher"]["scratch"]  # 64 per head, FFN 4x
    assert (wider["hidden"], wider["heads"], wider["ffn"], wider["layers"]) == (384, 6, 1536, 4)
    with pytest.raises(SystemExit, match="hidden 300 is not a multiple of the 64 per attention head"):
        bench_teacher.with_value(params, "scratch.hidden", 300)
    assert [bench_teacher.value_of(params, p) for p in ("pretrain.mask_prob", "scratch.layers", "lr")] == \
        [0.15, 4, params["teacher"]["lr"]]
    assert bench_teacher.label("pretrain.mask_prob") == "pretrain.mask_prob"
    assert bench_teacher.label("scratch.layers") == "teacher.scratch.layers"


def test_a_scratch_param_needs_a_scratch_teacher(tmp_path, monkeypatch):
    params = load_params(ROOT / "params.yaml")
    params["teacher"]["model"] = "csebuetnlp/banglabert"
    write_params(tmp_path, params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench_teacher", "--param", "scratch.vocab_size", "--values", "8000"])
    with pytest.raises(SystemExit) as stop:
        bench_teacher.main()
    assert str(stop.value.code).startswith("error: --param scratch.vocab_size needs teacher.model: scratch")


def test_the_defaults_row_of_a_pretrained_sweep_gets_its_runs_pretraining(tmp_path):
    """A sweep over make-bench runs shows the default's pretraining next to the value's, from the run's record
    and metrics; records written before that get it on --render-only, and a row already carrying it is kept."""
    run = tmp_path / "work" / "seed42"
    (run / "metrics").mkdir(parents=True)
    (run / "metrics" / "pretrain.json").write_text(json.dumps({"final_val_perplexity": 704.3}))
    (run / run_bench.RUN_FILE).write_text(json.dumps({"stages": {"pretrain": {"seconds": 787.0}}}))
    assert bench_teacher.run_pretraining(run) == {"pretrain_seconds": 787.0, "final_val_perplexity": 704.3,
                                                   "pretrained_in_run": True}
    assert bench_teacher.run_pretraining(tmp_path / "work" / "seed43") == {}  # no such run
    rows = [_row(42, 0.15, 0.78), {**_row(42, 0.4, 0.779), "pretrain_seconds": 1506.0, "final_val_perplexity": 421.2}]
    header = {"param": "pretrain.mask_prob", "default": 0.15, "runs": [{"seed": 42}], "work": str(tmp_path / "work"),
              "command": "c", "machine": {"cpu": "x"}}
    result = {"header": header, "rows": rows}
    bench_teacher.add_run_pretraining(result)
    assert rows[0]["pretrain_seconds"] == 787.0 and rows[1]["pretrain_seconds"] == 1506.0
    text = bench_teacher.render({**result, **bench_teacher.summarize(rows, 0.15)})
    assert "| 787 / 704.3 (the run's) |" in text and "| 1506 / 421.2 |" in text


def test_set_cannot_override_the_swept_param(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_teacher", "--param", "pretrain.lr", "--values", "0.001", "0.0005",
                                      "--set", "pretrain.lr=0.002"])
    with pytest.raises(SystemExit, match=r"--set pretrain.lr is the swept param; give its values with --values"):
        bench_teacher.main()


def _record(seed, changes, param="scratch.hidden", overrides=None):
    rows = [_row(seed, 256, 0.70 + seed / 1000), _row(seed, 384, 0.70 + seed / 1000 + changes)]
    header = {"command": f"bench_teacher --seeds {seed}", "param": param, "default": 256, "teacher": {},
              "machine": {"cpu": "a CPU"},
              "runs": [{"seed": seed}], "work": "bench/work/x", **({"overrides": overrides} if overrides else {})}
    return {"header": header, "rows": rows, **bench_teacher.summarize(rows, 256)}


def test_records_of_one_sweep_made_a_seed_at_a_time_merge_into_one_paired_table(tmp_path, monkeypatch, capsys):
    names = []
    for seed, change in ((42, 0.01), (43, 0.02), (44, 0.015)):
        names.append(str(tmp_path / f"s{seed}.json"))
        (tmp_path / f"s{seed}.json").write_text(json.dumps(_record(seed, change, overrides={"pretrain.lr": 0.0005})))
    monkeypatch.setattr(sys, "argv", ["bench_teacher", "--merge", *names, "--out", str(tmp_path / "all")])
    bench_teacher.main()
    result = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))
    assert [r["seed"] for r in result["rows"]] == [42, 42, 43, 43, 44, 44]
    assert result["summary"]["384"]["val_change_vs_default"]["values"] == pytest.approx([0.01, 0.02, 0.015])
    assert result["header"]["merged_from"] == names and "then: python -m bench.bench_teacher --merge" in result["header"]["command"]

    (tmp_path / "other.json").write_text(json.dumps(_record(45, 0.01, param="scratch.layers")))
    (tmp_path / "again.json").write_text(json.dumps(_record(42, 0.01, overrides={"pretrain.lr": 0.0005})))
    for bad, message in (("other.json", "differs in param"), ("again.json", "share a seed")):
        monkeypatch.setattr(sys, "argv", ["bench_teacher", "--merge", names[0], str(tmp_path / bad),
                                          "--out", str(tmp_path / "bad")])
        with pytest.raises(SystemExit) as stop:
            bench_teacher.main()
        assert message in str(stop.value)
    assert not (tmp_path / "bad.json").exists()

    # seeds whose runs lie in different work dirs (make bench reruns) merge; the table names both
    moved = _record(45, 0.01, overrides={"pretrain.lr": 0.0005})
    moved["header"]["work"] = "bench/work/y"
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    monkeypatch.setattr(sys, "argv", ["bench_teacher", "--merge", names[0], str(tmp_path / "moved.json"),
                                      "--out", str(tmp_path / "two_dirs")])
    bench_teacher.main()
    assert "(`bench/work/x/seed<N>`, `bench/work/y/seed<N>`)" in (tmp_path / "two_dirs.md").read_text(encoding="utf-8")
