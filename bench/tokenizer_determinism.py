"""Is the tokenizer trainer deterministic? Trains the default teacher tokenizer (SentencePiece unigram) on the train split in
N separate processes and prints each vocabulary's hash (expected: 1 distinct vocabulary; the WordPiece trainer used before gave one per run).

    .venv/bin/python bench/tokenizer_determinism.py [N]      # needs data/prepared (dvc repro prepare)"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONE_RUN = """
import hashlib, yaml
from banglacompress.data import load_split
from banglacompress.models import train_tokenizer
params = yaml.safe_load(open({root!r} + "/params.yaml"))
texts, _, _ = load_split({root!r} + "/data/prepared", "train")
tok = train_tokenizer(texts, params["teacher"]["scratch"]["vocab_size"], params["data"]["max_length"])
print(hashlib.md5(str(sorted(tok.get_vocab().items(), key=lambda kv: kv[1])).encode()).hexdigest())
"""


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    hashes = [subprocess.run([sys.executable, "-c", ONE_RUN.format(root=str(ROOT))], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1] for _ in range(runs)]
    for i, h in enumerate(hashes, 1):
        print(f"run {i}: vocabulary {h}")
    print(f"{len(set(hashes))} distinct vocabularies in {runs} runs")


if __name__ == "__main__":
    main()
