"""bench/compare_screens.py: a screen pairs only with the default run whose teacher it used, changes are screen
minus default per seed, and the default rule's verdict (tiny records in the shape run_bench and bench_frontier
write)."""
import json

import pytest

from bench import compare_screens as cs


def record(tmp_path, name, dataset, seed, teacher, final, cpu="AMD EPYC"):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"machine": {"cpu": cpu}, "datasets": {dataset: {"runs": [
        {"seed": seed, "cpu": cpu, "val": {"teacher": teacher, "final": final}}]}}}))
    return path


def screen(tmp_path, name, teacher, final, overrides=None, cpu="AMD EPYC", corpus="data/pretrain_corpus.txt"):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"overrides": {"distill.alpha": 1.0} if overrides is None else overrides,
                                "corpus": corpus, "machine": {"cpu": cpu}, "rows": [
        {"teacher_val_macro_f1": teacher, "val_macro_f1_student": final, "val_macro_f1_pruned": final,
         "val_macro_f1_final": final}]}))
    return path


def pairs(tmp_path, changes: dict):
    """{dataset: [change per seed]} -> paired runs, each default run with its own teacher."""
    out = []
    for dataset, per_seed in changes.items():
        for i, change in enumerate(per_seed):
            teacher = 0.5 + 0.01 * i + 0.001 * len(out)
            out.append(cs.pair(dataset, record(tmp_path, f"d{len(out)}", dataset, 42 + i, teacher, 0.7),
                               screen(tmp_path, f"s{len(out)}", teacher, 0.7 + change)))
    return out


def test_a_screen_pairs_only_with_its_own_teacher(tmp_path):
    base = record(tmp_path, "base", "cyberbully", 42, 0.76, 0.78)
    p = cs.pair("cyberbully", base, screen(tmp_path, "same", 0.76, 0.80))
    assert p["seed"] == 42 and p["change"] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="not made on"):
        cs.pair("cyberbully", base, screen(tmp_path, "other", 0.7601, 0.80))
    with pytest.raises(ValueError, match="CPU types"):
        cs.pair("cyberbully", base, screen(tmp_path, "intel", 0.76, 0.80, cpu="Intel Xeon"))
    with pytest.raises(ValueError, match="0 toxic runs"):
        cs.pair("toxic", base, screen(tmp_path, "same", 0.76, 0.80))


def test_a_record_of_several_runs_gives_the_run_with_the_screens_teacher(tmp_path):
    """bench/RESULTS.json holds 3 runs per dataset: each screen pairs with its own seed's run, found by teacher."""
    base = tmp_path / "results.json"
    base.write_text(json.dumps({"machine": {"cpu": "AMD EPYC"}, "datasets": {"toxic": {"runs": [
        {"seed": 42 + i, "val": {"teacher": t, "final": f}} for i, (t, f) in enumerate([(0.68, 0.70), (0.67, 0.71),
                                                                                       (0.66, 0.72)])]}}}))
    p = cs.pair("toxic", base, screen(tmp_path, "s43", 0.67, 0.70))
    assert p["seed"] == 43 and p["change"] == pytest.approx(-0.01)
    with pytest.raises(ValueError, match="none of its 3 toxic runs"):
        cs.pair("toxic", base, screen(tmp_path, "other", 0.6701, 0.70))


def test_the_default_side_can_be_the_committed_pipeline_dir(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "train_teacher.json").write_text(json.dumps({"val_macro_f1_tuned": 0.85}))
    (tmp_path / "metrics" / "quantize.json").write_text(json.dumps({"val_macro_f1": 0.86}))
    (tmp_path / "params.yaml").write_text("seed: 43\n")
    p = cs.pair("hatespeech", tmp_path, screen(tmp_path, "s", 0.85, 0.855))
    assert p["seed"] == 43 and p["change"] == pytest.approx(-0.005)


@pytest.mark.parametrize("changes, verdict", [
    ({d: [0.01, 0.012, 0.011] for d in cs.DATASETS}, "met"),
    ({**{d: [0.01, 0.012, 0.011] for d in cs.DATASETS}, "toxic": [0.01, -0.02, -0.01]}, "fails: the mean falls on toxic"),
    ({d: [0.01, -0.009, 0.001] for d in cs.DATASETS}, "fails: no dataset outside noise"),
    ({"cyberbully": [0.02, 0.01], "hatespeech": [-0.001]},
     "not decided: fewer than 3 seeds on hatespeech, cyberbully, toxic, sentnob; so far the mean falls on hatespeech"),
])
def test_the_default_rule(tmp_path, changes, verdict):
    assert cs.compare(pairs(tmp_path, changes))["rule"] == verdict


def test_pairs_from_different_machines_mix_and_each_row_names_its_cpu(tmp_path):
    """Each pair is made on one machine; seeds may come from different ones, and the table says which."""
    a = cs.pair("toxic", record(tmp_path, "a", "toxic", 43, 0.6, 0.7), screen(tmp_path, "sa", 0.6, 0.71))
    b = cs.pair("toxic", record(tmp_path, "b", "toxic", 44, 0.5, 0.7, cpu="Intel Xeon"),
                screen(tmp_path, "sb", 0.5, 0.72, cpu="Intel Xeon"))
    text = cs.render({"command": "c", **cs.compare([a, b])})
    assert "| toxic | 43 | AMD EPYC |" in text and "| toxic | 44 | Intel Xeon |" in text


def test_one_change_at_a_time_and_each_run_once(tmp_path):
    a = cs.pair("cyberbully", record(tmp_path, "a", "cyberbully", 42, 0.7, 0.7), screen(tmp_path, "sa", 0.7, 0.71))
    b = cs.pair("cyberbully", record(tmp_path, "b", "cyberbully", 43, 0.6, 0.7),
                screen(tmp_path, "sb", 0.6, 0.71, overrides={"distill.soft_loss": "mse"}))
    with pytest.raises(ValueError, match="different params"):
        cs.compare([a, b])
    with pytest.raises(ValueError, match="given twice"):
        cs.compare([a, a])


def test_the_same_seed_on_another_cpu_type_is_another_run(tmp_path):
    """Seed 42 on two CPU types trains two teachers: both pairs count, and the table names each CPU."""
    runs = [cs.pair("cyberbully", record(tmp_path, f"d{cpu}", "cyberbully", 42, teacher, 0.7, cpu=cpu),
                    screen(tmp_path, f"s{cpu}", teacher, 0.7 + change, cpu=cpu))
            for cpu, teacher, change in (("AMD EPYC", 0.76, 0.01), ("AMD EPYC, AVX-512", 0.77, 0.02))]
    saved = cs.compare(runs)
    assert len(saved["datasets"]["cyberbully"]["runs"]) == 2
    assert saved["datasets"]["cyberbully"]["change"]["mean"] == pytest.approx(0.015)
    text = cs.render({"command": "c", **saved})
    assert "| cyberbully | 42 | AMD EPYC |" in text and "| cyberbully | 42 | AMD EPYC, AVX-512 |" in text


def test_another_transfer_set_is_part_of_the_change(tmp_path):
    """A --corpus screen is named by its corpus, and is not pooled with a screen on the run's own corpus."""
    a = cs.pair("toxic", record(tmp_path, "a", "toxic", 42, 0.7, 0.7),
                screen(tmp_path, "sa", 0.7, 0.71, overrides={}, corpus="data/transfer_aug1.txt"))
    b = cs.pair("toxic", record(tmp_path, "b", "toxic", 43, 0.6, 0.7), screen(tmp_path, "sb", 0.6, 0.71, overrides={}))
    assert "Change: `--corpus=data/transfer_aug1.txt`" in cs.render({"command": "c", **cs.compare([a])})
    with pytest.raises(ValueError, match="different params"):
        cs.compare([a, b])


def test_a_student_shape_screen_names_its_shape_as_the_change(tmp_path):
    """bench_frontier --shape L2_H256=2,256,4,1024 sets no --set override: the shape itself is the change, so it
    must show in the change and never pair as "no change" beside screens of the default shape."""
    default = {"layers": 1, "hidden": 96, "heads": 2, "ffn": 384}
    path = screen(tmp_path, "wide", 0.76, 0.79, overrides={})
    saved = json.loads(path.read_text())
    saved["rows"][0].update({"layers": 2, "hidden": 256, "heads": 4, "ffn": 1024})
    path.write_text(json.dumps(saved))
    assert cs.screen_run(path, default)["overrides"] == {"student.scratch.layers": 2, "student.scratch.hidden": 256,
                                                         "student.scratch.heads": 4, "student.scratch.ffn": 1024}
    saved["rows"][0].update(default)
    path.write_text(json.dumps(saved))
    assert cs.screen_run(path, default)["overrides"] == {}
    assert set(cs.default_shape()) == {"layers", "hidden", "heads", "ffn"}  # params.yaml's student.scratch
