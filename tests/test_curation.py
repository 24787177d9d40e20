"""Data curation: near-duplicate removal (MinHash LSH) against planted duplicates, the quality filters' reasons,
and a curated corpus that keeps the raw corpus's validation text."""
import random

import pytest

from scalinglab.train.curation import curate, near_duplicates, quality_problem, split_corpus_filter


def _doc(seed: int, words: int = 400) -> bytes:
    rng = random.Random(seed)
    vocab = [f"name{i}" for i in range(3000)]
    lines = []
    for _ in range(words // 8):
        lines.append("    " + " = ".join(rng.choice(vocab) for _ in range(2)) + "(" + ", ".join(rng.choice(vocab) for _ in range(6)) + ")")
    return ("\n".join(lines) + "\n").encode()


def test_near_duplicates_are_found_and_distinct_documents_kept():
    docs = [(f"d{i}.py", _doc(i)) for i in range(30)]
    base = docs[3][1]
    words = base.split(b" ")
    edited = b" ".join(w if i % 97 else b"changed" for i, w in enumerate(words))   # ~1% of the words changed
    docs += [("copy.py", base), ("edited.py", edited), ("other.py", _doc(99))]
    assert near_duplicates(docs) == [30, 31]


def test_quality_filters_name_their_reason():
    good = _doc(1)
    assert quality_problem(good) is None
    assert quality_problem(b"x = 1\n") == "short"
    assert quality_problem(b"DATA = '" + b"a" * 2000 + b"'\n" + good) == "long lines"
    assert quality_problem(b"0x00, 0x01, 0x02, 0x03,\n" * 40) == "few letters"
    assert quality_problem(b"self.assertEqual(value, expected)\n" * 30 + good[:300]) == "repeated lines"
    kept, report = curate([("a.py", good), ("b.py", b"x = 1\n"), ("c.py", good)], "curated")
    assert [n for n, _ in kept] == ["a.py"]
    assert report["removed"] == {"short": 1, "near-duplicate": 1} and report["documents_out"] == 1
    with pytest.raises(ValueError, match="dedup"):
        curate([], "clean")


def test_corpus_suffixes():
    assert split_corpus_filter("stdlib+curated") == ("stdlib", "curated")
    assert split_corpus_filter("data/a+b.txt") == ("data/a+b.txt", None)
    assert split_corpus_filter("stdlib") == ("stdlib", None)


def test_a_curated_corpus_trains_on_less_and_validates_on_the_same_text(tmp_path, monkeypatch):
    from scalinglab.train.data import is_val, load_tokens
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "corpus"
    folder.mkdir()
    names = [f"m{i}.py" for i in range(200)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(_doc(i % 150))          # 50 exact copies
    raw, cur = load_tokens(str(folder)), load_tokens(f"{folder}+dedup")
    assert (raw.val == cur.val).all() and raw.val.size > 0
    n_val = sum(is_val(n) for n in names)
    assert cur.curation["documents_in"] == 200 - n_val
    copies = sum(not is_val(names[i]) and not is_val(names[i - 150]) for i in range(150, 200))
    assert cur.curation["removed"]["near-duplicate"] == copies > 0
    assert cur.train.size < raw.train.size and cur.corpus_hash != raw.corpus_hash
    assert load_tokens(f"{folder}+dedup").curation == cur.curation     # from the cache


def test_the_cli_refuses_unknown_corpora_and_mixers_before_writing(tmp_path):
    from typer.testing import CliRunner

    from scalinglab.cli import app
    for bad, msg in ((["--corpus", "nope+curated"], "+curated"), (["--corpus", "stdlib+clean"], "no such file"),
                     (["--mixer", "rnn"], "attention, ssm, hybrid")):
        r = CliRunner().invoke(app, ["ladder", "--preset", "smoke", "--store", str(tmp_path / "s.db"), *bad])
        assert r.exit_code == 2 and msg in r.output, (bad, r.output)
    r = CliRunner().invoke(app, ["compare", "--preset", "smoke", "--baseline", "dense", "--candidate", "x:data=clean",
                                 "--store", str(tmp_path / "s.db")])
    assert r.exit_code == 2 and "raw, dedup, filtered, curated" in r.output, r.output
    assert not (tmp_path / "s.db").exists()
