"""Show that each test named in the measurement audit fails on the bug it names: apply one deliberate
mutation to the package, run that test, restore the file. A mutation the test does not catch is
reported as SURVIVED and the script exits 1.

    .venv/bin/python scripts/mutation_check.py            # all (the pipeline one takes a few minutes)
    .venv/bin/python scripts/mutation_check.py --quick    # without the DVC pipeline smoke test
    .venv/bin/python scripts/mutation_check.py --only BPE # the mutations whose description says BPE

It edits package files in place (restored in a finally block): do not run it while `dvc repro` runs."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (what the bug is, file, exact text, replacement, pytest node ids)
MUTATIONS = [
    ("a masked LM that stalled at word frequencies saved, and the teacher fine-tuned from it",
     "banglacompress/pretrain.py",
     'check_took_off(history[-1]["val_perplexity"], unigram_perplexity, cfg["min_context_gain"])', "pass",
     ["tests/test_pretrain.py::test_a_stalled_pretraining_stops_with_one_line_and_saves_nothing"]),
    ("the context-free model counting special tokens ([CLS], [SEP]) as words",
     "banglacompress/pretrain.py", "torch.bincount(ids[~torch.isin(ids, dataset.special_ids)], minlength=size)",
     "torch.bincount(ids, minlength=size)",
     ["tests/test_pretrain.py::test_context_free_perplexity_is_that_of_a_model_predicting_each_tokens_frequency"]),
    ("the context-free perplexity scored on one chosen token per batch, not on every one",
     "banglacompress/pretrain.py", "unigram_total -= unigram[chosen].sum().item()",
     "unigram_total -= unigram[chosen[:1]].sum().item() * len(chosen)",
     ["tests/test_pretrain.py::test_context_free_perplexity_is_that_of_a_model_predicting_each_tokens_frequency"]),
    ("a tokenizer normalizer that strips Bangla vowel signs (BERT-style accent stripping)",
     "banglacompress/models.py", "tok.normalizer = normalizers.NFC()",
     "tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()])",
     ["tests/test_models.py::test_tokenizer_keeps_bangla_vowel_signs"]),
    ("BPE merges applied in the reverse of the order SentencePiece learned them",
     "banglacompress/models.py", "merges.sort(key=lambda m: (m[2], vocab[m[0]], vocab[m[1]]))",
     "merges.sort(key=lambda m: (-m[2], vocab[m[0]], vocab[m[1]]))",
     ["tests/test_models.py::test_fast_tokenizer_splits_text_as_sentencepiece_does"]),
    ("a loaded (hub, local, pretrained) model keeping its saved dropout: teacher.dropout ignored",
     "banglacompress/models.py",
     "config = with_dropout(AutoConfig.from_pretrained(name_or_path, **label_config(meta)), dropout, group)",
     "config = AutoConfig.from_pretrained(name_or_path, **label_config(meta))",
     ["tests/test_models.py::test_dropout_applies_to_a_loaded_model_not_only_to_a_scratch_one"]),
    ("a scratch model's dropout taken unchecked: dropout 1.0 or -0.1 ends in torch's traceback",
     "banglacompress/models.py", "**shape, **extra), dropout, group)",
     "**shape, **extra, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout), 0.1, group)",
     ["tests/test_models.py::test_a_bad_dropout_is_a_one_line_error"]),
    ("stacking's train offsets from a regression fit on every train row (not out-of-fold)",
     "bench/bench_stacking.py", "fit_tfidf_lr(task, [texts[i] for i in fit_rows], y[fit_rows], seed=seed)",
     "fit_tfidf_lr(task, texts, y, seed=seed)",
     ["tests/test_bench_stacking.py::test_each_train_rows_offset_comes_from_a_regression_that_never_saw_it"]),
    ("stacking's full-regression offsets written over a train text's out-of-fold ones",
     "bench/bench_stacking.py", "    table.update({k: torch.from_numpy(v) for k, v in zip(keys(train), train_offsets)})\n    return table",
     "    return {**{k: torch.from_numpy(v) for k, v in zip(keys(train), train_offsets)}, **table}",
     ["tests/test_bench_stacking.py::test_a_train_text_met_again_keeps_its_out_of_fold_offset"]),
    ("distill.alpha auto giving multi-label data 0.7 (hard labels kept), like binary data",
     "banglacompress/distill.py", 'AUTO_ALPHA = {"multilabel": 1.0,', 'AUTO_ALPHA = {"multilabel": 0.7,',
     ["tests/test_distill.py::test_auto_alpha_is_the_number_for_the_task_in_the_loss_and_the_record"]),
    ("prune.kd_from auto healing multi-label data from the teacher, like binary data",
     "banglacompress/prune.py", 'AUTO_HEALING = {"kd_from": {"multilabel": "student",',
     'AUTO_HEALING = {"kd_from": {"multilabel": "teacher",',
     ["tests/test_prune.py::test_auto_healing_distils_from_the_source_at_the_weight_for_the_task"]),
    ("prune.kd_alpha auto keeping the labels in multi-label healing (0.7, like binary data)",
     "banglacompress/prune.py", '"kd_alpha": {"multilabel": 1.0,', '"kd_alpha": {"multilabel": 0.7,',
     ["tests/test_prune.py::test_auto_healing_distils_from_the_source_at_the_weight_for_the_task"]),
    ("compare_screens rejecting a seed run on another CPU type as the same run given twice",
     "bench/compare_screens.py", 'run = (p["dataset"], p["seed"], p["screen"]["cpu"])',
     'run = (p["dataset"], p["seed"], None)',
     ["tests/test_bench_compare_screens.py::test_the_same_seed_on_another_cpu_type_is_another_run"]),
    ("compare_bench pairing a variant's runs with the default's by file order instead of by seed",
     "bench/compare_bench.py", "pairs = [(scores(base[name, s]), scores(new[name, s])) for s in seeds]",
     "pairs = [(scores(base[name, s]), scores(r)) for s, r in zip(seeds, [r for (n, _), r in new.items() if n == name])]",
     ["tests/test_compare_bench.py::test_changes_are_paired_by_seed_and_judged_against_their_noise"]),
    ("run_bench --set of a key params.yaml lacks (a typo) added silently: the default runs under a variant's name",
     "bench/run_bench.py", "if not isinstance(node, dict) or last not in node:", "if not isinstance(node, dict):",
     ["tests/test_run_bench.py::test_set_of_a_key_params_yaml_lacks_or_without_its_own_files_is_one_line"]),
    ("timing in a fixed rotation, so each model always follows the same model",
     "banglacompress/measure.py", "for n in rng.permutation(names):",
     "for n in names[i % len(names):] + names[:i % len(names)]:",
     ["tests/test_compress.py::test_interleaving_randomises_the_order_and_times_every_model_warm"]),
    ("a timing loop that times models cold (no warm-up call before each timed call)",
     "banglacompress/measure.py", "            call(n, items[i - 1])\n", "",
     ["tests/test_compress.py::test_interleaving_randomises_the_order_and_times_every_model_warm"]),
    ("end-to-end latency measured on the wrong model",
     "banglacompress/measure.py", 'lambda n, text: classifiers[n]([text])',
     'lambda n, text: classifiers[names[0]]([text])',
     ["tests/test_compress.py::test_measure_speed_attributes_each_models_time_to_it"]),
    ("cross-validation std computed wrongly (variance)",
     "banglacompress/train.py", '"cv_macro_f1_std": float(np.std(scores))', '"cv_macro_f1_std": float(np.var(scores))',
     ["tests/test_training.py::test_cross_validation_reports_every_fold"]),
    ("structured pruning that no longer shrinks the matrices",
     "banglacompress/models.py", 'def shrink_block(block, keep_heads=None, keep_neurons=None) -> None:\n',
     'def shrink_block(block, keep_heads=None, keep_neurons=None) -> None:\n    return\n',
     ["tests/test_prune.py::test_structured_halves_the_encoders_multiply_adds"]),
    ("ONNX INT8 that leaves the MatMul weights in FP32",
     "banglacompress/quantize.py",
     'ops = ["MatMul", "Attention", *(["Gather", "EmbedLayerNormalization"] if embeddings else [])]',
     'ops = ["Gather"] if embeddings else ["Softmax"]',
     ["tests/test_quantize.py::test_stored_params_count_packed_weights"]),
    ("a fused graph kept without checking it against PyTorch",
     "banglacompress/onnx_format.py", "    if _export_error(model, data) >= 1e-3:\n        return onnx_bytes, {}\n", "",
     ["tests/test_quantize.py::test_a_wrong_fusion_is_not_kept"]),
    ("the inference path skipping the training-time text cleaning",
     "banglacompress/runtime.py", 'cleaned = [clean_text(t) if isinstance(t, str) else "" for t in texts]',
     'cleaned = [t if isinstance(t, str) else "" for t in texts]',
     ["tests/test_quantize.py::test_text_classifier_is_what_scoring_and_the_tokenizer_give"]),
    ("near-duplicates not removed (the key is the exact text)",
     "banglacompress/data.py",
     '    return "".join(ch for ch in text.casefold() if unicodedata.category(ch)[0] in "LM")', "    return text",
     ["tests/test_data.py::test_prepare_counts_near_duplicates_and_no_test_text_has_a_train_twin",
      "tests/test_data.py::test_near_duplicates_share_a_key_and_are_removed_before_splitting"]),
    ("given splits: train rows with a near-twin in test kept (each split checked against the next one only)",
     "banglacompress/data.py", "        for later in SPLITS[i + 1:]:\n", "        for later in SPLITS[i + 1:i + 2]:\n",
     ["tests/test_given_splits.py::test_cross_split_twins_are_removed_from_the_earlier_split_and_counted"]),
    ("given splits: cross-split twins counted but not removed",
     "banglacompress/data.py", "out[name] = splits[name][~leaked].reset_index(drop=True)",
     "out[name] = splits[name].reset_index(drop=True)",
     ["tests/test_given_splits.py::test_cross_split_twins_are_removed_from_the_earlier_split_and_counted"]),
    ("make data: a download or copy renamed into place without its sha256 checked",
     "scripts/fetch_data.py", "        if digest.hexdigest() != expected:\n", "        if False:\n",
     ["tests/test_fetch_data.py::test_nothing_wrong_is_left_under_the_real_name"]),
]
SLOW = [
    ("training that never updates the weights: every stage scores like chance",
     "banglacompress/train.py", "            optimizer.step()\n", "            pass\n",
     ["tests/test_pipeline.py::test_dvc_repro_smoke_and_caching"]),
]


def run(bug: str, path: str, old: str, new: str, tests: list[str]) -> bool:
    file = ROOT / path
    source = file.read_text(encoding="utf-8")
    if source.count(old) != 1:
        sys.exit(f"mutation_check: the text to mutate for '{bug}' is not in {path} exactly once; update MUTATIONS")
    file.write_text(source.replace(old, new), encoding="utf-8")
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                                cwd=ROOT, capture_output=True, text=True)
    finally:
        file.write_text(source, encoding="utf-8")
    caught = result.returncode != 0
    reason = next((line for line in result.stdout.splitlines() if line.startswith("E ")), "").strip()
    print(f"{'caught  ' if caught else 'SURVIVED'} {bug}\n         {', '.join(t.split('::')[1] for t in tests)}"
          + (f"\n         {reason[:160]}" if reason else ""), flush=True)
    return caught


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the DVC pipeline smoke test (minutes)")
    ap.add_argument("--only", default=None, help="only the mutations whose description contains this text")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS + ([] if args.quick else SLOW) if args.only is None or args.only in m[0]]
    if not chosen:
        sys.exit(f"error: no mutation's description contains {args.only!r}")
    results = [run(*m) for m in chosen]
    print(f"{sum(results)} of {len(results)} mutations caught")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
