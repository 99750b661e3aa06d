"""scripts/fetch_data.py (`make data`): every corpus sha256-checked, never a half-written or wrong file under
the real name, the user's own file kept, and only the default dataset (or one named with --only) required."""
import hashlib
import importlib.util
import re
import sys

import pytest

from conftest import ROOT, SHARED_DATA

spec = importlib.util.spec_from_file_location("fetch_data", ROOT / "scripts" / "fetch_data.py")
fetch_data = importlib.util.module_from_spec(spec)
sys.modules["fetch_data"] = fetch_data  # @dataclass looks its module up there
spec.loader.exec_module(fetch_data)

CONTENT = "Comments,HateSpeech\nভালো,0\nখারাপ,1\n".encode("utf-8")


def _dataset(tmp_path, name="demo", *, local: bytes | None = CONTENT, remote: bytes | None = None,
             default=False, expected=CONTENT):
    """A dataset whose local copy and 'download' (a file:// URL) hold the given bytes (None: absent)."""
    (tmp_path / "shared").mkdir(exist_ok=True)
    local_copy, remote_file = tmp_path / "shared" / f"{name}.csv", tmp_path / f"remote_{name}.csv"
    for path, content in ((local_copy, local), (remote_file, remote)):
        if content is not None:
            path.write_bytes(content)
    return fetch_data.Dataset(name, tmp_path / "data" / "raw" / f"{name}.csv", hashlib.sha256(expected).hexdigest(),
                              local_copy, remote_file.as_uri(), f"the {name} corpus", default=default)


def _leftovers(ds):
    return [p.name for p in ds.target.parent.iterdir() if p.name != ds.target.name]


def test_copies_the_local_file_then_finds_it_there(tmp_path):
    ds = _dataset(tmp_path)
    ok, line = fetch_data.fetch(ds, required=True)
    assert ok and "copied from" in line and ds.target.read_bytes() == CONTENT and not _leftovers(ds)
    ok, line = fetch_data.fetch(ds, required=True)
    assert ok and "already there (sha256 ok)" in line


def test_a_wrong_local_copy_is_not_used_and_the_download_is(tmp_path):
    ds = _dataset(tmp_path, local=CONTENT + b"x,0\n", remote=CONTENT)
    ok, line = fetch_data.fetch(ds, required=True)
    assert ok and "downloaded from" in line and ds.target.read_bytes() == CONTENT and not _leftovers(ds)


def test_nothing_wrong_is_left_under_the_real_name(tmp_path):
    ds = _dataset(tmp_path, local=CONTENT[:-3], remote=CONTENT + b"tampered")
    ok, line = fetch_data.fetch(ds, required=False)
    assert not ok and not ds.target.exists() and not _leftovers(ds)
    assert line.startswith("missing: ") and "sha256 is not the pinned one" in line


def test_an_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken:
        def __init__(self):
            self.calls = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError("connection reset by peer")
            return CONTENT[:10]

    monkeypatch.setattr(fetch_data.urllib.request, "urlopen", lambda url, timeout: Broken())
    ds = _dataset(tmp_path, local=None)
    ok, line = fetch_data.fetch(ds, required=True)
    assert not ok and "connection reset by peer" in line
    assert not ds.target.exists() and not _leftovers(ds)


def test_without_a_source_the_message_says_what_to_put_where(tmp_path):
    ds = _dataset(tmp_path, local=None, remote=None, default=True)
    ok, line = fetch_data.fetch(ds, required=True)
    assert not ok and line.startswith("error: ") and "\n" not in line
    for part in (str(ds.target), str(ds.local_copy), ds.url, ds.sha256, "point data.path"):
        assert part in line


def test_the_users_own_file_is_kept(tmp_path):
    ds = _dataset(tmp_path)
    ds.target.parent.mkdir(parents=True)
    ds.target.write_bytes(b"Comments,HateSpeech\nmine,1\n")
    ok, line = fetch_data.fetch(ds, required=True)
    assert ok and "kept as it is" in line and ds.target.read_bytes() == b"Comments,HateSpeech\nmine,1\n"


def test_only_the_default_dataset_or_a_named_one_is_required(tmp_path, monkeypatch, capsys):
    default, present, absent = (_dataset(tmp_path, "base", default=True), _dataset(tmp_path, "extra"),
                                _dataset(tmp_path, "gone", local=None))
    monkeypatch.setattr(fetch_data, "DATASETS", (default, present, absent))
    assert fetch_data.main([]) == 0  # `make repro` on the default data goes on
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and err.startswith("missing: ") and "1 of 3 corpora missing (gone)" in err
    assert fetch_data.main(["--only", "gone"]) == 2  # asked for by name: required
    assert capsys.readouterr().err.startswith("error: ")
    monkeypatch.setattr(fetch_data, "DATASETS", (_dataset(tmp_path, "base2", local=None, default=True), present))
    assert fetch_data.main([]) == 2


def test_the_table_pins_every_default_corpus_to_a_commit():
    targets = {ds.name: str(ds.target) for ds in fetch_data.DATASETS}
    assert targets == {"hatespeech": "data/raw/HateSpeech.csv",  # the committed pipeline's dvc.lock names it
                       "cyberbully": "data/raw/cyberbully_multilabel.csv", "toxic": "data/raw/toxic_multilabel.csv",
                       "sentnob_train": "data/raw/sentnob_train.csv", "sentnob_val": "data/raw/sentnob_val.csv",
                       "sentnob_test": "data/raw/sentnob_test.csv"}
    assert [ds.name for ds in fetch_data.DATASETS if ds.default] == ["hatespeech"]
    for ds in fetch_data.DATASETS:
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[^/\s]+/[^/\s]+/[0-9a-f]{40}/\S+", ds.url), ds.url
        assert re.fullmatch(r"[0-9a-f]{64}", ds.sha256)
    assert fetch_data.DATASETS[3].url.endswith("/ba5ba9f56a2929e7135624c0ab39cbad7256c6d9/SentNoB%20Dataset/Train.csv")


@pytest.mark.real_data
def test_the_pinned_sha256_are_those_of_the_shared_files(shared_data):
    for ds in fetch_data.DATASETS:
        assert fetch_data.sha256(SHARED_DATA / ds.local_copy.name) == ds.sha256, ds.name
