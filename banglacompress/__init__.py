"""banglacompress: teacher -> distil -> prune -> quantize for Bangla comment classifiers.

Modules, lowest layer first; a module imports only modules above it in this list (a test checks that
the import graph has no cycle), so each DVC stage depends on the modules it really uses:

    config       params, one-line user errors, atomic outputs, pipeline variants
    integrity    SHA256SUMS of every model directory, written on save and checked on load
    runtime      the torch-free inference core: cleaning, decisions, ONNX Runtime sessions, the Classifier loop
    scoring      probabilities, thresholds tuned on val, metrics (numpy only)
    baseline     the TF-IDF + logistic-regression reference model (benchmarks; distill.tfidf_weight)
    pooling      cls / mean / max pooling for the classification head
    data         read, clean, de-duplicate, split or take given splits (the prepare stage: prepare_splits), batch
    models       scratch / hub models, tokenizers, model directories, structured-pruned shapes
    train        the one training loop, inference, thresholds (the train_teacher stage: train_teacher)
    pretrain     masked-LM pretraining on unlabelled in-domain text, never a val / test text (stages/pretrain.py)
    inference    text in, label out: TextClassifier, the path predict runs and evaluate times
    distill      KD losses and KD_METHODS specs (the distill stage: train_student)
    measure      bytes on disk, interleaved latency / throughput
    prune        pruning methods and PRUNE_METHODS specs (the prune stage: prune_and_heal)
    onnx_format  ONNX export, the ONNX Runtime model wrapper, ONNX graph helpers
    quantize     quantization formats and QUANT_METHODS specs, quantize param checks
    artifact     save / load any format, stored parameters (the quantize stage: quantize_and_verify)
    evaluate     test metrics, ratios, plots (the evaluate stage: evaluate_stages)
    export       the model card and models/final (the export stage: write_final)
    predict      the command-line labeller (python -m banglacompress.predict); ONNX models without torch
"""
import logging

# On CPUs with AVX512-BF16, importing bitsandbytes warns that an optional 4-bit kernel from the Hugging Face
# hub (`pip install kernels`) could not be loaded, and falls back to its own CPU kernel, which is what runs
# everywhere else. The warning is noise for every command here, and it would turn predict's one-line errors
# into two lines (seen on this project's CI-type machine on 2026-12-01), so it is silenced before any
# module imports bitsandbytes. Other bitsandbytes errors still show.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
