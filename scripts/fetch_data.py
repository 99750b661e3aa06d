"""Put the default dataset at data/raw/HateSpeech.csv, checked by sha256.

Order: already there -> copy of ../shared/data/hatespeech_binary.csv -> download of the public file
pinned to a commit. Without any of them it stops and says where to put a CSV."""
import hashlib
import shutil
import sys
import urllib.request
from pathlib import Path

TARGET = Path("data/raw/HateSpeech.csv")
SHA256 = "98b8a761ffdbc55fa6dc3e4339cda38b3c01cea24541348454a63c3077529078"
LOCAL_COPY = Path("../shared/data/hatespeech_binary.csv")
URL = ("https://raw.githubusercontent.com/AnnNaserNabil/BanglaHeteSpeech-DPQ/"
       "acf16383914169056df77554d8144153a9ece9d5/data/HateSpeech.csv")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    if TARGET.exists():
        if sha256(TARGET) != SHA256:
            print(f"note: {TARGET} differs from the pinned public file (your own data?); keeping it", file=sys.stderr)
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    tmp = TARGET.with_suffix(".part")
    if LOCAL_COPY.exists():
        shutil.copyfile(LOCAL_COPY, tmp)
        source = str(LOCAL_COPY)
    else:
        try:
            with urllib.request.urlopen(URL, timeout=30) as response, open(tmp, "wb") as f:
                shutil.copyfileobj(response, f)
            source = URL
        except OSError as err:
            tmp.unlink(missing_ok=True)
            print(f"error: cannot get the default dataset ({err}). Put a CSV with columns Comments,HateSpeech at "
                  f"{TARGET}, or point data.path in params.yaml at your own CSV.", file=sys.stderr)
            return 2
    if sha256(tmp) != SHA256:
        tmp.unlink()
        print(f"error: {source} does not match the pinned sha256 {SHA256}; not using it", file=sys.stderr)
        return 2
    tmp.replace(TARGET)
    print(f"data: {TARGET} from {source} (sha256 ok)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
