"""pretrain_corpus: the pretraining text: the train split plus pretrain.corpora, cleaned, de-duplicated, and
without any text whose near-duplicate key is a val or test text's. Its own stage (seconds), so that a change
which leaves every text as it was (a label-side param, say) reruns this and not the pretraining after it.
When pretraining does not apply (pretrain.enabled, teacher.model), the corpus is empty and no corpus is read."""
from banglacompress.config import load_params, log_config, stage_main, write_json
from banglacompress.data import load_split
from banglacompress.pretrain import (CORPUS_FILE, check_pretrain_params, corpus_summary, pretraining_applies,
                                     pretraining_corpus, write_corpus)


@stage_main
def main():
    params = load_params()
    cfg = check_pretrain_params(params.get("pretrain", {}))
    log_config("pretrain_corpus", {"corpora": cfg["corpora"], "enabled": cfg["enabled"]})
    if not pretraining_applies(cfg, params["teacher"]):
        write_corpus([], CORPUS_FILE)
        write_json("metrics/pretrain_corpus.json", {"skipped": True, "reason": "no pretraining (pretrain.enabled, "
                                                    "teacher.model): no corpus is read"})
        print(f"[pretrain_corpus] skipped: no pretraining; {CORPUS_FILE} is empty", flush=True)
        return
    train, val, test = (load_split("data/prepared", s)[0] for s in ("train", "val", "test"))
    texts, counts = pretraining_corpus(train, cfg["corpora"], exclude_texts=val + test)
    write_corpus(texts, CORPUS_FILE)
    write_json("metrics/pretrain_corpus.json", counts)
    print(f"[pretrain_corpus] {corpus_summary(counts)} -> {CORPUS_FILE}", flush=True)


if __name__ == "__main__":
    main()
