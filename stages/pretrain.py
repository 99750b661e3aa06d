"""pretrain: masked-LM pretraining of the teacher's encoder on data/pretrain_corpus.txt (the train split plus
pretrain.corpora, never a val or test text). train_teacher starts from models/pretrained when pretraining
applies (pretrain.enabled: auto = a scratch teacher); otherwise this writes notes and exits."""
from banglacompress.config import load_params, log_config, stage_main, write_json
from banglacompress.data import CORPUS_FILE, read_corpus
from banglacompress.pretrain import (PRETRAINED_DIR, check_pretrain_params, pretrain_mlm, pretraining_applies,
                                     write_skipped)
from banglacompress.train import configure_torch


@stage_main
def main():
    params = load_params()
    cfg = check_pretrain_params(params.get("pretrain", {}))
    log_config("pretrain", cfg)
    if not pretraining_applies(cfg, params["teacher"]):  # not an error: the outputs are notes
        reason = (f"pretrain.enabled is {cfg['enabled']} and teacher.model is {params['teacher']['model']}: "
                  "no pretraining; the teacher starts from teacher.model")
        write_json("metrics/pretrain.json", write_skipped(PRETRAINED_DIR, "plots/pretrain", reason))
        print(f"[pretrain] skipped: {reason}", flush=True)
        return
    configure_torch(params["threads"])
    metrics = pretrain_mlm(cfg, texts=read_corpus(CORPUS_FILE), out_dir=PRETRAINED_DIR, seed=params["seed"],
                           max_length=params["data"]["max_length"], teacher_cfg=params["teacher"],
                           live_dir="plots/pretrain")
    if metrics is not None:  # None: a non-zero data-parallel rank, which writes nothing
        write_json("metrics/pretrain.json", metrics)


if __name__ == "__main__":
    main()
