"""bench/run_bench.py (`make bench`): the summary over seeds on hand-made runs, where every number is known
exactly; then the whole benchmark on synthetic data with --quick's tiny models and stages run in process
(RESULTS.json / .md, --resume), and a given-splits dataset (SentNoB's kind) prepared in its work dir."""
import json
import sys

import pandas as pd
import pytest
import yaml

from banglacompress.data import SPLITS, check_data_params, near_duplicate_key
from bench import run_bench
from conftest import ROOT, synthetic_frame

SUMMARY_KEYS = {"seeds", "teacher_macro_f1_mean", "teacher_macro_f1_std", "final_macro_f1_mean",
                "final_macro_f1_std", "tfidf_macro_f1_mean", "tfidf_macro_f1_std", "final_minus_tfidf_mean",
                "final_minus_tfidf_std", "goal"}
FILES = {"train": "tr.csv", "val": "va.csv", "test": "te.csv"}
SEEDS = [42, 43]


def _run(seed, teacher, final, tfidf):
    return {"seed": seed, "result": {"rows": {"teacher": {"macro_f1": teacher}, "final": {"macro_f1": final},
                                              "tfidf_logreg": {"macro_f1": tfidf}}}}


# final 0.80 0.82 0.84 and TF-IDF 0.79 0.78 0.83: final leads by 0.01, 0.04, 0.01 (0.02 on average).
RUNS = [_run(42, 0.85, 0.80, 0.79), _run(43, 0.86, 0.82, 0.78), _run(44, 0.87, 0.84, 0.83)]


def test_summary_is_the_mean_the_sample_std_and_the_paired_difference():
    s = run_bench.summarize(RUNS, margin=0.01)
    assert SUMMARY_KEYS <= set(s) and s["seeds"] == [42, 43, 44]
    assert s["final_macro_f1_per_seed"] == [0.80, 0.82, 0.84]
    assert s["teacher_macro_f1_mean"] == pytest.approx(0.86) and s["teacher_macro_f1_std"] == pytest.approx(0.01)
    assert s["final_macro_f1_mean"] == pytest.approx(0.82)
    assert s["final_macro_f1_std"] == pytest.approx(0.02)  # n - 1; the population std would be 0.0163
    assert s["tfidf_macro_f1_mean"] == pytest.approx(0.80) and s["tfidf_macro_f1_std"] == pytest.approx(0.0007 ** 0.5)
    # Paired per seed: 0.02 ± 0.0173. Unpaired (difference of the means, the spread of both rows) would be
    # 0.02 ± 0.0332; pairing the sorted values instead of the seeds' gives 0.02, 0.03, 0.01 (± 0.01).
    assert s["final_minus_tfidf_per_seed"] == pytest.approx([0.01, 0.04, 0.01])
    assert s["final_minus_tfidf_mean"] == pytest.approx(0.02)
    assert s["final_minus_tfidf_std"] == pytest.approx(0.0003 ** 0.5)
    one = run_bench.summarize(RUNS[:1], margin=0.0)  # one seed: no spread, not an error
    assert one["final_macro_f1_std"] == one["final_minus_tfidf_std"] == 0.0


@pytest.mark.parametrize("margin, met", [(0.01, True),   # hatespeech / cyberbully: 0.82 >= 0.80 + 0.01
                                         (0.02, True),   # a tie at the threshold is met (float rounding aside)
                                         (0.03, False),  # 0.82 < 0.83
                                         (0.0, True)])   # toxic / sentnob: 0.82 >= 0.80
def test_goal_compares_the_final_mean_with_tfidf_mean_plus_the_margin(margin, met):
    goal = run_bench.summarize(RUNS, margin)["goal"]
    assert goal["met"] is met and goal["margin"] == margin and goal["threshold"] == pytest.approx(0.80 + margin)
    assert goal["rule"] == f"final_macro_f1_mean >= tfidf_macro_f1_mean + {margin}"


def test_goal_without_margin_is_missed_when_tfidf_is_ahead_on_average():
    runs = [_run(42, 0.8, 0.70, 0.72), _run(43, 0.8, 0.75, 0.74)]  # ahead once, behind on average
    s = run_bench.summarize(runs, margin=0.0)
    assert s["final_minus_tfidf_mean"] == pytest.approx(-0.005) and s["goal"]["met"] is False


def test_the_four_datasets_and_their_params():
    """Every dataset's params pass prepare's checks (no data read): SentNoB's given splits keep the
    random-split options at params.yaml's values, and --quick samples only the single-file datasets."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert list(run_bench.DATASETS) == ["hatespeech", "cyberbully", "toxic", "sentnob"]
    assert {n: s["margin"] for n, s in run_bench.DATASETS.items()} == {
        "hatespeech": 0.01, "cyberbully": 0.01, "toxic": 0.0, "sentnob": 0.0}
    quick = run_bench.quick_datasets(run_bench.DATASETS)
    for name in run_bench.DATASETS:
        for datasets, params in ((run_bench.DATASETS, base), (quick, run_bench.quick_params(base))):
            data = run_bench.run_params(datasets[name], 43, params)["data"]
            check_data_params(data)
            assert data["fraction"] == (1.0 if datasets is run_bench.DATASETS or name == "sentnob"
                                        else run_bench.QUICK_FRACTION)
    sentnob = run_bench.run_params(run_bench.DATASETS["sentnob"], 43, base)
    assert sentnob["seed"] == 43 and sentnob["data"]["split_seed"] is None
    assert sentnob["data"]["split_files"] == {s: f"sentnob_{s}.csv" for s in SPLITS}
    assert base["data"]["path"] == "data/raw/HateSpeech.csv"  # run_params copies; params.yaml's dict is untouched


@pytest.mark.real_data
def test_the_datasets_files_have_their_columns(shared_data):
    for name, spec in run_bench.DATASETS.items():
        for path in run_bench.input_files(spec):
            columns = pd.read_csv(path, encoding="utf-8-sig", nrows=5).columns  # toxic's header has a BOM
            assert {spec["data"]["text_column"], *spec["data"]["label_columns"]} <= set(columns), (name, path)


# ---------------------------------------------------------------------------------------- the flow, end to end
def _given_splits(directory):
    """SentNoB-like train/val/test files (Data, Label 0/1/2), no near-duplicate within or across them;
    returns their row counts."""
    frame = synthetic_frame("multiclass", n=360, seed=3)
    frame = frame[~frame.Data.map(near_duplicate_key).duplicated()].reset_index(drop=True)
    parts = dict(zip(SPLITS, (frame.iloc[:240], frame.iloc[240:290], frame.iloc[290:])))
    directory.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        part.to_csv(directory / FILES[name], index=False)
    return {name: len(part) for name, part in parts.items()}


def _given_spec(directory):
    return {"data": {"path": directory, "text_column": "Data", "label_columns": ["Label"],
                     "split_files": dict(FILES)}, "margin": 0.0}


def _quick_base():
    return run_bench.quick_params(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    """The benchmark on two synthetic datasets (a random split and given splits) x two seeds, --quick sizes."""
    tmp = tmp_path_factory.mktemp("bench")
    synthetic_frame("binary", n=300).to_csv(tmp / "binary.csv", index=False)
    _given_splits(tmp / "given")
    datasets = {"binary": {"data": {"path": tmp / "binary.csv", "text_column": "Comments",
                                    "label_columns": ["HateSpeech"]}, "margin": 0.01},
                "given": _given_spec(tmp / "given")}
    kwargs = dict(work=tmp / "work", out=tmp / "RESULTS", samples=5, threads=1, in_process=True, quick=True)
    saved = run_bench.bench(datasets, SEEDS, _quick_base(), command="test", **kwargs)
    return saved, datasets, kwargs


def test_quick_bench_writes_every_summary_and_leads_with_their_table(quick_bench, monkeypatch):
    saved, datasets, kwargs = quick_bench
    out = kwargs["out"]
    results = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert list(results["datasets"]) == list(datasets) and results["seeds"] == SEEDS
    for name, d in results["datasets"].items():
        s = d["summary"]
        assert SUMMARY_KEYS <= set(s) and s["seeds"] == SEEDS, name
        assert [run["seed"] for run in d["runs"]] == SEEDS
        for run in d["runs"]:
            rows = run["result"]["rows"]
            assert {"teacher", "student", "pruned", "final", "predecessor", "tfidf_logreg"} <= set(rows)
            assert list(run["stages"]) == run_bench.PIPELINE + ["predecessor_prune", "predecessor_quantize"]
            assert set(run["targets"]) == {"f1_retained", "compression", "speedup", "beats_tfidf", "repro_minutes"}
        # the summary is of these runs' rows
        f1 = lambda row: [run["result"]["rows"][row]["macro_f1"] for run in d["runs"]]  # noqa: E731
        assert s["final_macro_f1_per_seed"] == f1("final") and s["tfidf_macro_f1_per_seed"] == f1("tfidf_logreg")
        assert s["teacher_macro_f1_per_seed"] == f1("teacher")
        assert s["goal"]["threshold"] == pytest.approx(s["tfidf_macro_f1_mean"] + datasets[name]["margin"])
    text = out.with_suffix(".md").read_text(encoding="utf-8")
    lines = text.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("|")))
    table = lines[first:first + 2 + len(datasets)]
    assert table[0].startswith("| dataset | seeds | teacher macro-F1 | final macro-F1 | TF-IDF macro-F1 | final − ")
    assert [row.split(" | ")[0].strip("| ") for row in table[2:]] == list(datasets)
    assert not lines[first + 2 + len(datasets)].startswith("|")
    assert "| given | 42, 43 |" in text and "final ≥ TF-IDF + 0.01" in table[2] and "final ≥ TF-IDF |" in table[3]
    # each run keeps its pretraining corpus counts, and the markdown says them; and the val macro-F1 of its
    # teacher and final model as the stages chose them (what compare_bench decides on)
    for d in results["datasets"].values():
        for run in d["runs"]:
            metrics = ROOT / run["work"] / "metrics"
            counts = json.loads((metrics / "pretrain_corpus.json").read_text())
            assert run["pretrain_corpus"] == counts
            assert run["val"] == {"teacher": json.loads((metrics / "train_teacher.json").read_text())[
                "val_macro_f1_tuned"], "final": json.loads((metrics / "quantize.json").read_text())["val_macro_f1"]}
            assert f"{counts['total']['rows_read']:,} rows read" in text
    # --render-only rebuilds the same markdown from RESULTS.json alone
    out.with_suffix(".md").unlink()
    monkeypatch.setattr(sys, "argv", ["run_bench", "--render-only", "--out", str(out)])
    run_bench.main()
    assert out.with_suffix(".md").read_text(encoding="utf-8") == text
    # the seed draws a single-file dataset's split; given splits stay as given
    work = kwargs["work"]
    test_csv = lambda name, seed: (work / name / f"seed{seed}" / "data/prepared/test.csv").read_text()  # noqa: E731
    assert test_csv("binary", 42) != test_csv("binary", 43)
    assert test_csv("given", 42) == test_csv("given", 43)


def test_resume_reruns_nothing_finished_and_only_what_is_not(quick_bench, monkeypatch):
    saved, datasets, kwargs = quick_bench
    work, base = kwargs["work"], _quick_base()
    calls, real = [], run_bench.run_stage
    monkeypatch.setattr(run_bench, "run_stage", lambda path, stage, in_process=False: calls.append(
        (path.parent.name, path.name, stage)) or real(path, stage, in_process))
    logs = {p: p.stat().st_mtime_ns for p in work.rglob("logs/*.log")}
    again = run_bench.bench(datasets, SEEDS, base, resume=True, **kwargs)
    assert calls == [] and again["datasets"] == saved["datasets"]
    assert {p: p.stat().st_mtime_ns for p in work.rglob("logs/*.log")} == logs
    # Other params (params.yaml edited meanwhile): the run is not finished for them.
    seed42 = run_bench.run_params(datasets["binary"], 42, base)
    assert run_bench.finished_run(work / "binary" / "seed42", seed42) is not None
    assert run_bench.finished_run(work / "binary" / "seed42", {**seed42, "seed": 7}) is None
    # Other code (a stage's module edited since): not finished either, and the message says why.
    module = work / "binary" / "seed42" / "banglacompress" / "distill.py"
    original = module.read_bytes()
    module.write_bytes(original + b"# edited\n")
    assert run_bench.finished_run(work / "binary" / "seed42", seed42) is None
    module.write_bytes(original)
    # An interrupted run (no record yet) runs again, the others are kept.
    (work / "binary" / "seed43" / run_bench.RUN_FILE).unlink()
    again = run_bench.bench(datasets, SEEDS, base, resume=True, **kwargs)
    assert calls == [("binary", "seed43", s) for s in run_bench.PIPELINE] + [
        ("binary", "seed43_predecessor", s) for s in ("prune", "quantize")]
    assert again["datasets"]["given"] == saved["datasets"]["given"]
    assert [r["seed"] for r in again["datasets"]["binary"]["runs"]] == SEEDS


def test_a_rerun_reuses_pretraining_and_the_teacher_only_when_dvc_would_skip_them(quick_bench, monkeypatch):
    """A label-side param changed (teacher.epochs): the rerun copies the previous run's pretrained encoder and
    its wall time instead of pretraining again; a distill param: the teacher too. A pretrain param changed, or
    another CPU type: it pretrains."""
    saved, datasets, kwargs = quick_bench
    work, base = kwargs["work"] / "binary" / "seed42", _quick_base()
    calls, real = [], run_bench.run_stage
    monkeypatch.setattr(run_bench, "run_stage", lambda path, stage, in_process=False: calls.append(
        (path.name, stage)) or real(path, stage, in_process))
    pretrained = {p.name: p.read_bytes() for p in (work / "models/pretrained").iterdir() if p.is_file()}
    took = json.loads((work / run_bench.RUN_FILE).read_text(encoding="utf-8"))["stages"]["pretrain"]
    only = {"binary": datasets["binary"]}
    kwargs = {**kwargs, "out": kwargs["out"].with_name("RESULTS_rerun")}

    base["teacher"]["epochs"] += 1
    run = run_bench.bench(only, [42], base, resume=True, **kwargs)["datasets"]["binary"]["runs"][0]
    assert ("seed42", "pretrain") not in calls and ("seed42", "train_teacher") in calls
    assert run["stages"]["pretrain"] == {**took, "reused": True}
    assert {p.name: p.read_bytes() for p in (work / "models/pretrained").iterdir() if p.is_file()} == pretrained
    assert not work.with_name(".seed42.previous").exists()

    # A distill param changed: the teacher is reused as well, with its bytes, scores and seconds, and distill runs
    calls.clear()
    teacher = {p.name: p.read_bytes() for p in (work / "models/teacher").iterdir() if p.is_file()}
    before = json.loads((work / run_bench.RUN_FILE).read_text(encoding="utf-8"))
    base["distill"]["epochs"] += 1
    run = run_bench.bench(only, [42], base, resume=True, **kwargs)["datasets"]["binary"]["runs"][0]
    assert {stage for name, stage in calls if name == "seed42"} == set(run_bench.PIPELINE) - {"pretrain",
                                                                                               "train_teacher"}
    assert run["stages"]["train_teacher"] == {**before["stages"]["train_teacher"], "reused": True}
    assert {p.name: p.read_bytes() for p in (work / "models/teacher").iterdir() if p.is_file()} == teacher
    assert run["result"]["rows"]["teacher"]["macro_f1"] == before["result"]["rows"]["teacher"]["macro_f1"]
    assert run["val"]["teacher"] == before["val"]["teacher"]

    calls.clear()
    base["pretrain"]["mask_prob"] = 0.2
    run = run_bench.bench(only, [42], base, resume=True, **kwargs)["datasets"]["binary"]["runs"][0]
    assert ("seed42", "pretrain") in calls and "reused" not in run["stages"]["pretrain"]

    calls.clear()
    base["teacher"]["epochs"] += 1
    monkeypatch.setattr(run_bench, "cpu_type", lambda: "another CPU")
    run_bench.bench(only, [42], base, resume=True, **kwargs)
    assert ("seed42", "pretrain") in calls


def test_a_stage_runs_the_package_copied_into_its_work_dir(tmp_path):
    """Not the installed (editable) one: --resume keeps a run by comparing its copy with the repo's code, so
    the copy must be what ran."""
    _given_splits(tmp_path / "raw")
    work = tmp_path / "work"
    run_bench.make_workdir(work, run_bench.run_params(_given_spec(tmp_path / "raw"), 42, _quick_base()))
    with open(work / "banglacompress" / "__init__.py", "a", encoding="utf-8") as init:
        init.write("\nimport sys\nprint('[test] the copy in the work dir', file=sys.stderr)\n")
    run_bench.run_stage(work, "prepare")
    assert "[test] the copy in the work dir" in (work / "logs" / "prepare.log").read_text(encoding="utf-8")


def test_a_given_splits_spec_prepares_the_given_files_whatever_the_seed(tmp_path):
    """Like sentnob: the work dir's params carry data.split_files and the seed, and prepare keeps every given
    row (the files hold no duplicates) in its split, the same for every seed. Seed 42's prepare runs as
    `make bench` runs a stage (its own process), seed 43's in process as --quick does."""
    sizes = _given_splits(tmp_path / "raw")
    spec, base = _given_spec(tmp_path / "raw"), _quick_base()
    prepared = {}
    for seed, in_process in ((42, False), (43, True)):
        work = tmp_path / "work" / f"seed{seed}"
        run_bench.make_workdir(work, run_bench.run_params(spec, seed, base))
        run_bench.run_stage(work, "prepare", in_process)
        params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
        assert params["seed"] == seed and params["data"]["split_files"] == FILES
        assert params["data"]["path"] == str(tmp_path / "raw")
        prepared[seed] = {name: (work / "data" / "prepared" / f"{name}.csv").read_text(encoding="utf-8")
                          for name in SPLITS}
        rows = {name: len(pd.read_csv(work / "data" / "prepared" / f"{name}.csv")) for name in SPLITS}
        assert rows == sizes
    assert prepared[42] == prepared[43]


def test_set_makes_a_variant_in_its_own_files_and_compare_bench_pairs_it_with_the_default(quick_bench, tmp_path,
                                                                                          monkeypatch):
    from bench import compare_bench
    saved, datasets, kwargs = quick_bench
    overrides = [run_bench.parse_override("teacher.epochs=1"), run_bench.parse_override("teacher.scratch.hidden=32")]
    assert overrides == [("teacher.epochs", 1), ("teacher.scratch.hidden", 32)]
    variant = run_bench.bench({"binary": datasets["binary"]}, SEEDS, _quick_base(), command="test", **{
        **kwargs, "work": tmp_path / "work", "out": tmp_path / "RESULTS"}, overrides=overrides)
    params = yaml.safe_load((tmp_path / "work/binary/seed42/params.yaml").read_text(encoding="utf-8"))
    assert params["teacher"]["epochs"] == 1 and params["teacher"]["scratch"]["hidden"] == 32
    assert params["teacher"]["scratch"]["layers"] == _quick_base()["teacher"]["scratch"]["layers"]  # the rest kept
    assert variant["overrides"] == {"teacher.epochs": 1, "teacher.scratch.hidden": 32}
    assert "**A variant, not the default:** params.yaml with `teacher.epochs=1`, `teacher.scratch.hidden=32`." in \
        (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    # paired with the default's runs of the same dataset and seeds: the same test split, the changes are new - base
    base, _ = compare_bench.load_runs([kwargs["out"].with_suffix(".json")])
    new, _ = compare_bench.load_runs([tmp_path / "RESULTS.json"])
    base = {key: run for key, run in base.items() if key[0] == "binary"}
    table = compare_bench.compare(base, new)["binary"]
    assert table["seeds"] == SEEDS
    for run, b, n in zip(table["runs"], variant["datasets"]["binary"]["runs"], saved["datasets"]["binary"]["runs"]):
        assert run["new"]["val_teacher"] == b["val"]["teacher"] and run["base"]["val_final"] == n["val"]["final"]
    change = table["summary"]["val_final"]["change"]["values"]
    assert change == [r["new"]["val_final"] - r["base"]["val_final"] for r in table["runs"]]


@pytest.mark.parametrize("bad", ["teacher.epochs", "data.path=x.csv", "seed=1", "teacher..lr=1", "=1"])
def test_set_refuses_what_is_not_a_params_key(bad):
    with pytest.raises(Exception, match="expected KEY=VALUE"):
        run_bench.parse_override(bad)


def test_set_of_a_key_params_yaml_lacks_or_without_its_own_files_is_one_line(monkeypatch, capsys, tmp_path):
    with pytest.raises(KeyError, match="teacher.scratch.widht: params.yaml has no such key"):
        run_bench.with_overrides(_quick_base(), [("teacher.scratch.widht", 384)])
    argv = ["run_bench", "--datasets", "sentnob", "--set", "teacher.lr=0.001"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as e:
        run_bench.main()
    assert e.value.code == 2 and "give it its own --work and --out" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", argv[:-1] + ["teacher.lrr=0.001", "--work", str(tmp_path), "--out",
                                                  str(tmp_path / "R")])
    with pytest.raises(SystemExit, match="bench: --set teacher.lrr: params.yaml has no such key"):
        run_bench.main()
