"""pretrain: masked-LM pretraining of the teacher's encoder on the train split + pretrain.corpora, never on a
val or test text; models/pretrained is what teacher.model points at when pretrain.enabled is true."""
from banglacompress.config import load_params, log_config, stage_main, write_json
from banglacompress.data import load_split
from banglacompress.pretrain import (check_pretrain_params, corpus_summary, pretrain_mlm, pretraining_corpus,
                                     write_skipped)
from banglacompress.train import configure_torch


@stage_main
def main():
    params = load_params()
    cfg = check_pretrain_params(params.get("pretrain", {}))
    log_config("pretrain", cfg)
    if not cfg["enabled"]:  # not an error: the outputs are notes, and train_teacher does not read them
        write_json("metrics/pretrain.json", write_skipped("models/pretrained", "plots/pretrain"))
        print("[pretrain] skipped: pretrain.enabled is false", flush=True)
        return
    configure_torch(params["threads"])
    train, val, test = (load_split("data/prepared", s)[0] for s in ("train", "val", "test"))
    texts, counts = pretraining_corpus(train, cfg["corpora"], exclude_texts=val + test)
    print(f"[pretrain] corpus: {corpus_summary(counts)}", flush=True)
    metrics = pretrain_mlm(cfg, texts=texts, out_dir="models/pretrained", seed=params["seed"],
                           max_length=params["data"]["max_length"], live_dir="plots/pretrain",
                           teacher_cfg=params["teacher"])
    if metrics is not None:  # None: a non-zero data-parallel rank, which writes nothing
        write_json("metrics/pretrain.json", {"corpus": counts, **metrics})


if __name__ == "__main__":
    main()
