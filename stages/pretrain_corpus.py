"""pretrain_corpus: the unlabelled text: the train split plus pretrain.corpora, cleaned, de-duplicated, and
without any text whose near-duplicate key is a val or test text's. The pretraining reads it, and distill
with distill.transfer: corpus. Its own stage (seconds), so that a change which leaves every text as it was (a
label-side param, say) reruns this and not the pretraining after it. When no stage reads it (pretrain.enabled,
teacher.model, distill.transfer), the corpus is empty and no corpus is read."""
from banglacompress.config import load_params, log_config, stage_main, write_json
from banglacompress.data import CORPUS_FILE, load_split, write_corpus
from banglacompress.pretrain import check_pretrain_params, corpus_readers, corpus_summary, pretraining_corpus


@stage_main
def main():
    params = load_params()
    cfg = check_pretrain_params(params.get("pretrain", {}))
    readers = corpus_readers(params)
    log_config("pretrain_corpus", {"corpora": cfg["corpora"], "enabled": cfg["enabled"], "read_by": readers})
    if not readers:
        write_corpus([], CORPUS_FILE)
        write_json("metrics/pretrain_corpus.json", {"skipped": True, "reason": "no stage reads it (no pretraining: "
                                                    "pretrain.enabled, teacher.model; distill.transfer: train): "
                                                    "no corpus is read"})
        print(f"[pretrain_corpus] skipped: no stage reads it; {CORPUS_FILE} is empty", flush=True)
        return
    train, val, test = (load_split("data/prepared", s)[0] for s in ("train", "val", "test"))
    texts, counts = pretraining_corpus(train, cfg["corpora"], exclude_texts=val + test)
    write_corpus(texts, CORPUS_FILE)
    write_json("metrics/pretrain_corpus.json", counts)
    print(f"[pretrain_corpus] {corpus_summary(counts)} -> {CORPUS_FILE} (read by {', '.join(readers)})", flush=True)


if __name__ == "__main__":
    main()
