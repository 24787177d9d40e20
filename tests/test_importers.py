import json

import pytest

from scalinglab.importers import ImportFormatError, export_runs, import_runs, parse_runs
from scalinglab.store import RunStore


def test_csv_import_with_units_and_derived_compute(runs_csv, tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        res = import_runs(runs_csv, st)
        assert res.written == 45 and "C = 6*N*D" in res.derived
        r = st.runs()[0]
        assert r.flops_6nd == pytest.approx(6 * r.n_total * r.tokens)


def test_missing_column_names_the_columns_found(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("size,foo\n1,2\n")
    with pytest.raises(ImportFormatError, match="columns found: size, foo"):
        parse_runs(p)


def test_explicit_mapping_and_missing_mapped_column(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("size,toks,val\n1M,1B,3.0\n2M,1B,2.9\n")
    res = parse_runs(p, {"n": "size", "d": "toks", "loss": "val"})
    assert [r.n_total for r in res.runs] == [1e6, 2e6]
    with pytest.raises(ImportFormatError, match="'nope' .*not found"):
        parse_runs(p, {"n": "nope", "d": "toks", "loss": "val"})


def test_bad_values_reported_with_rows_and_nothing_written(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("name,N,D,loss\na,1M,1B,3.0\nb,abc,1B,3.0\nc,-5,1B,3.0\nd,1M,1B,nan\n")
    with RunStore(tmp_path / "s.db") as st:
        with pytest.raises(ImportFormatError) as e:
            import_runs(p, st)
        assert st.runs() == []
    msg = str(e.value)
    assert "row 3" in msg and "'abc'" in msg and "row 4" in msg and "row 5" in msg and "3 problem(s)" in msg


def test_drop_invalid_keeps_the_rest(tmp_path):
    p = tmp_path / "nan.csv"
    p.write_text("name,N,D,loss\na,1M,1B,3.0\nb,2M,1B,inf\nc,3M,1B,2.5\n")
    res = parse_runs(p, drop_invalid=True)
    assert [r.name for r in res.runs] == ["a", "c"]
    assert res.dropped[0]["where"] == "row 3"


def test_duplicates_in_file(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("name,N,D,loss\na,1M,1B,3.0\na,2M,1B,2.9\n")
    with pytest.raises(ImportFormatError, match="row 3: duplicate of row 2"):
        parse_runs(p)


@pytest.mark.parametrize("name,content,match", [
    ("x.csv", b"\x00\x01\x02binary", "not UTF-8|binary"),
    ("x.jsonl", b'{"N": 1}\nnot json\n', "line 2: not valid JSON"),
    ("x.parquet", b"name,N\n", "not a Parquet file"),
    ("x.xlsx", b"whatever", "unsupported extension"),
    ("x.csv", b"just one column\n1\n", "only one column"),
])
def test_file_not_what_extension_says(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImportFormatError, match=match):
        parse_runs(p)


def test_jsonl_and_parquet_roundtrip(tmp_path, runs_csv):
    rows = [{"run": f"r{i}", "N": 1e6 * (i + 1), "C": 6e15 * (i + 1), "final_loss": 3 - 0.1 * i} for i in range(4)]
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    res = parse_runs(p)
    assert res.derived == ["D = C/(6*N)"] and res.runs[1].tokens == pytest.approx(1e9)
    with RunStore(tmp_path / "s.db") as st:
        import_runs(runs_csv, st)
        runs = st.runs()
    out = tmp_path / "out.parquet"
    assert export_runs(runs, out) == 45
    back = parse_runs(out, {"n": "n_total", "d": "tokens", "loss": "final_loss"})
    assert sorted(r.final_loss for r in back.runs) == pytest.approx(sorted(r.final_loss for r in runs))


def test_mapping_file(tmp_path):
    from scalinglab.importers import load_mapping
    m = tmp_path / "map.toml"
    m.write_text('n = "size"\nloss = "val"\n')
    assert load_mapping(m) == {"n": "size", "loss": "val"}
    m.write_text('bogus = "x"\n')
    with pytest.raises(ImportFormatError, match="unknown mapping key"):
        load_mapping(m)
