"""Put every default corpus under data/raw/, each checked by sha256 (`make data`; docs/data.md).

Per dataset, in order: already there -> a copy of ../shared/data/<file> -> a download of the public file
pinned to a commit. A copy or download goes to a temporary name and gets the real name only once its sha256
matches, so a failed or interrupted fetch never leaves a half-written or wrong file where the pipeline
reads. A file already there with another sha256 is kept (the user's own data).

Exit code: 2 if a required dataset is missing (the default HateSpeech.csv, or any named with --only),
else 0: the other corpora are read by the pretraining stages and the multi-dataset benchmark, so a missing
one is reported (one line each, and a summary); `dvc repro` then stops at pretrain_corpus with one line
naming the file (fetch it, or drop it from pretrain.corpora).

    python scripts/fetch_data.py                       # every dataset
    python scripts/fetch_data.py --only sentnob_train sentnob_val sentnob_test
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW = Path("data/raw")
SHARED = Path("../shared/data")  # the machine's read-only copies (../shared/data/SOURCES.md)


def github_raw(repo: str, commit: str, path: str) -> str:
    """The raw file at a commit (not a branch: the bytes cannot change under the sha256); spaces and other
    characters in the path URL-encoded."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{urllib.parse.quote(path)}"


@dataclass(frozen=True)
class Dataset:
    name: str
    target: Path          # where the pipeline reads it
    sha256: str
    local_copy: Path
    url: str
    about: str            # what it is, for the messages
    default: bool = False  # the default pipeline's data: without it `make data` fails


SENTNOB = ("thesabbirahmed/bangla-cyberbullying-dataset", "ba5ba9f56a2929e7135624c0ab39cbad7256c6d9")

# Sources, commits and sha256 from ../shared/data/SOURCES.md; docs/data.md has the same table.
DATASETS = (
    Dataset("hatespeech", RAW / "HateSpeech.csv",
            "98b8a761ffdbc55fa6dc3e4339cda38b3c01cea24541348454a63c3077529078", SHARED / "hatespeech_binary.csv",
            github_raw("AnnNaserNabil/BanglaHeteSpeech-DPQ", "acf16383914169056df77554d8144153a9ece9d5",
                       "data/HateSpeech.csv"),
            "the default dataset, binary hate speech (columns Comments, HateSpeech)", default=True),
    Dataset("cyberbully", RAW / "cyberbully_multilabel.csv",
            "ab115c3c722144499ee96d88ef48ba5c82d749031d7ab95eae464b3bb3315a47", SHARED / "cyberbully_multilabel.csv",
            github_raw("mahbuba26/QLORA_Finetune-Bangla-BERT-on-Bangla-Cyber-Bullying-Data-main--2-",
                       "658ee5f3ec9e6017a5ef4e11bd0d5b5a32ba6ae7", "data/1_Multilablel_Cyberbully_Data.csv"),
            "multi-label cyberbullying (comment; bully, sexual, religious, threat, spam)"),
    Dataset("toxic", RAW / "toxic_multilabel.csv",
            "ca8b928e2cb6d8d34220572330ae024c8a638264425927697d26d00dd899fb7f", SHARED / "toxic_multilabel.csv",
            github_raw("deepu099cse/Multi-Labeled-Bengali-Toxic-Comments-Classification",
                       "cefc08983b050d1f5aad55ecc64def33461781d0", "Dataset/Multi_labeled_toxic_comments.csv"),
            "multi-label toxic comments (text; vulgar, hate, religious, threat, troll, Insult)"),
    Dataset("sentnob_train", RAW / "sentnob_train.csv",
            "2755f05aaa3198b7d7e00241974362a770a4467267048a3956b18ef95116377e", SHARED / "sentnob_train.csv",
            github_raw(*SENTNOB, "SentNoB Dataset/Train.csv"), "SentNoB official train split (Data; Label 0/1/2)"),
    Dataset("sentnob_val", RAW / "sentnob_val.csv",
            "0b19347a83d5c56a6cff70561291bbe902b743f4a76d8b02eb625cd6880bb3ca", SHARED / "sentnob_val.csv",
            github_raw(*SENTNOB, "SentNoB Dataset/Val.csv"), "SentNoB official validation split (Data; Label 0/1/2)"),
    Dataset("sentnob_test", RAW / "sentnob_test.csv",
            "46f6f4c2812ea204d08f0c9e77b0b48a4a3a93aa7905e37f65e45ac259507ed6", SHARED / "sentnob_test.csv",
            github_raw(*SENTNOB, "SentNoB Dataset/Test.csv"), "SentNoB official test split (Data; Label 0/1/2)"),
)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def place(open_source, target: Path, expected: str) -> str | None:
    """Stream what open_source() opens into a temporary sibling of `target` and rename it to `target` only if
    its sha256 is `expected`. Returns None, or why it failed; never leaves the temporary file behind."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        digest = hashlib.sha256()
        with open_source() as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            return "its sha256 is not the pinned one"
        tmp.replace(target)
        return None
    except OSError as err:  # urllib's URLError and HTTPError are OSErrors too
        return str(getattr(err, "reason", None) or err)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(ds: Dataset, required: bool) -> tuple[bool, str]:
    """(whether ds.target is in place afterwards, one line saying what happened)."""
    if ds.target.exists():
        if sha256(ds.target) == ds.sha256:
            return True, f"data: {ds.target} already there (sha256 ok)"
        return True, (f"data: {ds.target} kept as it is: it differs from the pinned public file "
                      f"(your own data?); delete it to fetch {ds.name}")
    ds.target.parent.mkdir(parents=True, exist_ok=True)
    if ds.local_copy.exists():
        failure = place(lambda: open(ds.local_copy, "rb"), ds.target, ds.sha256)
        if failure is None:
            return True, f"data: {ds.target} copied from {ds.local_copy} (sha256 ok)"
        local = f"{ds.local_copy} not used: {failure}"
    else:
        local = f"no {ds.local_copy}"
    failure = place(lambda: urllib.request.urlopen(ds.url, timeout=30), ds.target, ds.sha256)
    if failure is None:
        return True, f"data: {ds.target} downloaded from {ds.url} (sha256 ok)"
    own = ", or point data.path in params.yaml at your own CSV" if ds.default else ""
    return False, (f"{'error' if required else 'missing'}: {ds.target} ({ds.name}: {ds.about}): {local}; "
                   f"downloading {ds.url} failed: {failure}. Put that file (sha256 {ds.sha256}) at {ds.target}"
                   f"{own}")


def main(argv: list[str] | None = None) -> int:
    names = [ds.name for ds in DATASETS]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                    help=f"fetch only these (they are then required): {', '.join(names)}")
    args = ap.parse_args(argv)
    chosen = [ds for ds in DATASETS if args.only is None or ds.name in args.only]
    missing_required, missing_optional = [], []
    for ds in chosen:
        required = ds.default or args.only is not None
        ok, line = fetch(ds, required)
        print(line, file=sys.stdout if ok else sys.stderr, flush=True)
        if not ok:
            (missing_required if required else missing_optional).append(ds.name)
    if missing_optional:
        print(f"data: {len(missing_optional)} of {len(chosen)} corpora missing ({', '.join(missing_optional)}): "
              "the default pipeline runs without them; the pretraining stage and the multi-dataset benchmark "
              "need them", file=sys.stderr)
    return 2 if missing_required else 0


if __name__ == "__main__":
    os.chdir(ROOT)  # the paths above are relative to the repository root, wherever this is run from
    sys.exit(main())
