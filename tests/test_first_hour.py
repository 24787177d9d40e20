"""What a new user meets first: missing extras, missing stores, run statuses, messages and numbers that
agree with the docs."""
import json
import re
import sqlite3
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from scalinglab import cost
from scalinglab._units import format_quantity
from scalinglab.cli import _common, app
from scalinglab.cli import lab as cli_lab
from scalinglab.importers import parse_runs
from scalinglab.report.html import render_report
from scalinglab.store import RunStore, Run

from conftest import isoflop_runs


def _invoke(args, cwd=None, monkeypatch=None):
    if cwd is not None:
        monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, args)


def _refused(r, *needles):
    """Exit 2, a message, no traceback."""
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    for n in needles:
        assert n in r.output, (n, r.output)


def test_fail_keeps_square_brackets():
    r = CliRunner().invoke(app, ["export", "runs.parquet", "--store", "/nonexistent/x.db"])
    _refused(r, "no run store")
    assert "[" not in _common.escape("a") and _common.escape("[report]") != "[report]"     # what _fail relies on


@pytest.mark.parametrize("args, extra, module", [
    (["report"], "report", "plotly"),
    (["serve"], "serve", "uvicorn"),
    (["export", "runs.parquet"], "parquet", "pyarrow"),
    (["ladder", "--preset", "smoke"], "train", "torch"),
    (["ladder", "--preset", "smoke", "--tokenizer", "bpe"], "bpe", "tokenizers"),
    (["ladder", "--preset", "smoke", "--executor", "ray"], "ray", "ray"),
    (["import-tracker", "tensorboard", "./runs", "--n", "n", "--d", "d"], "tensorboard", "tensorboard"),
    (["cost", "serve", "--params", "7B", "--hardware", "cpu"], "train", "torch"),
])
def test_a_missing_extra_names_its_install_command(tmp_path, monkeypatch, args, extra, module):
    with RunStore(tmp_path / "scalinglab.db"):
        pass
    monkeypatch.setitem(sys.modules, module, None)        # as if not installed: find_spec and import both fail
    r = _invoke(args, tmp_path, monkeypatch)
    _refused(r, f"pip install 'scalinglab[{extra}]'", module)


@pytest.mark.parametrize("args", [
    ["emergence", "--task", "addition:2"],
    ["forecast", "--task", "addition:2"],
    ["quantize"],
    ["evaluate"],
    ["distill", "--teacher", "x", "--compute", "1e9"],
    ["gate", "--policy", "policy.toml", "--run", "x"],
    ["export", "runs.csv"],
    ["report"],
    ["serve"],
    ["sample", "--ladder", "--task", "addition:2"],
])
def test_commands_that_need_a_store_refuse_and_create_none(tmp_path, monkeypatch, args):
    r = _invoke(args, tmp_path, monkeypatch)
    _refused(r, "no run store at scalinglab.db")
    assert not (tmp_path / "scalinglab.db").exists()


def test_quantize_and_evaluate_with_nothing_trained_refuse(tmp_path, monkeypatch):
    with RunStore(tmp_path / "scalinglab.db"):
        pass
    _refused(_invoke(["quantize"], tmp_path, monkeypatch), "nothing to quantize")
    _refused(_invoke(["evaluate"], tmp_path, monkeypatch), "nothing to evaluate")
    _refused(_invoke(["quantize", "--bits", "3"], tmp_path, monkeypatch), "--bits takes 8 and/or 4")


def test_mlflow_import_from_a_missing_database_creates_nothing(tmp_path, monkeypatch):
    r = _invoke(["import-tracker", "mlflow", "sqlite:///mlflow.db", "--n", "n", "--d", "d"], tmp_path, monkeypatch)
    _refused(r)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "scalinglab.db").exists()
    _refused(_invoke(["import-tracker", "comet", "x"], tmp_path, monkeypatch), "choose mlflow, tensorboard or wandb")
    _refused(_invoke(["import-tracker", "tensorboard", "x", "--n-convention", "params"], tmp_path, monkeypatch),
             "--n-convention must be one of")


def test_duplicate_import_hint_uses_the_cli_spelling(tmp_path, monkeypatch, runs_csv):
    assert _invoke(["import", str(runs_csv), "--n-col", "params", "--d-col", "tokens"], tmp_path, monkeypatch).exit_code == 0
    r = _invoke(["import", str(runs_csv), "--n-col", "params", "--d-col", "tokens"], tmp_path, monkeypatch)
    _refused(r, "--on-duplicate skip", "--on-duplicate replace")
    r = _invoke(["import", str(runs_csv), "--n-col", "params", "--d-col", "tokens", "--on-duplicate", "skip"], tmp_path,
                monkeypatch)
    assert r.exit_code == 0 and "imported 0 of 45" in r.output
    _refused(_invoke(["import", str(runs_csv), "--on-duplicate", "keep"], tmp_path, monkeypatch),
             "--on-duplicate must be error, skip or replace")


# --------------------------------------------------------------------------------------------- statuses
def test_queued_runs_become_running_on_progress_then_finished(tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        for i in range(3):
            st.upsert_run(Run(run_id=f"r{i}", name=f"r{i}", source="ladder", status="queued"))
        st.set_progress("r0", {"step": 1, "steps": 10})
        st.upsert_run(Run(run_id="r1", name="r1", source="ladder", status="finished", final_loss=2.0))
        st.set_progress("r1", {"step": 10, "steps": 10})          # a late heartbeat does not undo the result
        assert [r.status for r in st.runs()] == ["running", "finished", "queued"]
        page = render_report(st)
    assert "1 queued" in page and "1 running" in page and "1 finished" in page


def test_train_entries_writes_queued_placeholders(tmp_path):
    import dataclasses

    from scalinglab.train.config import ModelConfig, RunConfig
    from scalinglab.train.ladder import LadderEntry, train_entries
    seen = {}

    class Recorder:
        def run(self, tasks, on_progress, on_result):
            seen["before"] = [st.run(t.key).status for t in tasks]
            on_progress(tasks[0].key, {"step": 1, "steps": 4, "loss": 3.0, "tokens_per_s": 1.0, "eta_s": 1.0})
            seen["after_progress"] = [st.run(t.key).status for t in tasks]
            for t in tasks:
                on_result(t, None, "RuntimeError: stopped by the test")

    cfg = RunConfig(model=ModelConfig(vocab_size=256, d_model=16, n_layers=1, n_heads=2, seq_len=16))
    entries = [LadderEntry(name=f"e{i}", family="dense", budget=1e9, config=dataclasses.replace(cfg, seed=i))
               for i in range(2)]
    with RunStore(tmp_path / "s.db") as st:
        out = train_entries(entries, st, Recorder(), tmp_path / "ck", show_progress=False, log=lambda m: None)
        assert seen["before"] == ["queued", "queued"]
        assert seen["after_progress"] == ["running", "queued"]
        assert [r.status for r in st.runs()] == ["failed", "failed"] and out["failed"] == 2


def test_an_older_store_accepts_queued_and_keeps_its_curves(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta VALUES ('schema_version', '3');
    CREATE TABLE runs (run_id TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('finished','diverged','running','failed')), family TEXT,
        n_total REAL, n_nonembedding REAL, n_active REAL, tokens REAL, unique_tokens REAL, flops_6nd REAL,
        flops_with_attention REAL, final_loss REAL, budget REAL, config TEXT NOT NULL DEFAULT '{}',
        extra TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL);
    CREATE TABLE curves (run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, split TEXT NOT NULL,
        step INTEGER NOT NULL, tokens REAL NOT NULL, flops REAL NOT NULL, loss REAL, PRIMARY KEY (run_id, split, step));
    INSERT INTO runs VALUES ('a', 'a', 'x', 'running', NULL, 1, NULL, 1, 1, NULL, 6, NULL, NULL, NULL, '{}', '{}', 0, 0);
    INSERT INTO curves VALUES ('a', 'val', 1, 1.0, 6.0, 2.5);
    """)
    db.commit()
    db.close()
    with RunStore(path) as st:
        st.upsert_run(Run(run_id="b", name="b", source="x", status="queued"))
        assert [r.status for r in st.runs()] == ["running", "queued"]
        assert st.curve("a") == [{"step": 1, "tokens": 1.0, "flops": 6.0, "loss": 2.5}]
        st.delete_runs(["a"])
        assert st.curve("a") == []                                 # the curves still follow their run


def test_csv_import_accepts_every_status(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("name,N,D,loss,status\na,1e6,1e8,3.0,queued\nb,2e6,1e8,2.9,running\nc,3e6,1e8,2.8,done\n")
    with pytest.raises(Exception, match="'done' is not one of queued, running, finished, diverged, failed"):
        parse_runs(f)


# --------------------------------------------------------------------------------------------- numbers
def test_cost_serve_on_a_measured_cpu_shows_no_zero_rates(monkeypatch):
    monkeypatch.setattr(cost, "measure_this_cpu", lambda usd_per_hour=0.0: cost.Hardware(
        "this CPU (measured)", 1e11, None, 32e9, 2e10, usd_per_hour, measured=True))
    r = CliRunner().invoke(app, ["cost", "serve", "--params", "7B", "--hardware", "cpu"])
    assert r.exit_code == 0, r.output
    assert "no price" in r.output and "$0.000" not in r.output and " 0 tokens/s" not in r.output
    assert "1.32 tokens/s" in r.output          # 2e10 B/s over 14 GB of weights + 1.1 GB of KV cache per step
    r = CliRunner().invoke(app, ["cost", "serve", "--params", "7B", "--hardware", "cpu", "--usd-per-hour", "0.5", "--json"])
    out = json.loads(r.output)
    assert out["decode"]["usd_per_million_output_tokens"] > 0
    r = CliRunner().invoke(app, ["cost", "train", "--params", "1B", "--tokens", "20B", "--hardware", "cpu", "--json"])
    assert json.loads(r.output)["usd"] is None


def _coverage_file(path, n_problems=40, n=64, p=0.3, seed=0):
    rng = np.random.default_rng(seed)
    path.write_text("\n".join(json.dumps({"problem": f"q{i}", "n": n, "c": int(rng.binomial(n, p))})
                              for i in range(n_problems)))
    return path


def test_passk_says_interpolated_or_extrapolated(tmp_path):
    f = _coverage_file(tmp_path / "c.jsonl")
    r = CliRunner().invoke(app, ["passk", str(f), "--k", "1,4,16,64", "--target", "0.9", "--no-figures", "--bootstrap", "50"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "interpolated within the measured k ≤ 64" in out and "extrapolated" not in out
    r = CliRunner().invoke(app, ["passk", str(f), "--k", "1,2,4", "--target", "0.99", "--no-figures", "--bootstrap", "50"])
    assert "extrapolated beyond the measured k ≤ 4" in " ".join(r.output.split())


def _help(*args) -> str:
    """A command's help with the wrapping undone (box edges and whitespace removed)."""
    r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "160"})     # as wide as a usual terminal
    assert r.exit_code == 0, r.output
    return re.sub(r"[\s│]+", "", r.output)


def test_help_texts_document_the_formats():
    squeeze = lambda t: re.sub(r"\s+", "", t)  # noqa: E731
    gate = _help("gate")
    assert "[[rule]]" in gate and squeeze('metric = "exact_match"') in gate and "on_uncertain" in gate
    scores = _help("scores", "import")
    assert "task_loss" in scores and "forecastandgateneed" in scores and "model,N,D,task,metric,value" in scores
    ladder = _help("ladder")
    assert "task:KIND:DIGITS[:FORMAT]" in ladder
    assert squeeze(cli_lab.PRESET_WALL_TIMES["quick"]) in ladder and squeeze(cli_lab.PRESET_WALL_TIMES["smoke"]) in ladder


# --------------------------------------------------------------------------------------------- report
def test_report_groups_imported_runs_by_compute_and_counts_held_out_runs(tmp_path, monkeypatch):
    N, D, L = isoflop_runs(budgets=np.logspace(17, 19, 3), sizes=7)
    f = tmp_path / "runs.csv"
    f.write_text("params,tokens,loss\n" + "\n".join(f"{n:.6e},{d:.6e},{l:.6f}" for n, d, l in zip(N, D, L)))
    assert _invoke(["import", str(f), "--n-col", "params", "--d-col", "tokens"], tmp_path, monkeypatch).exit_code == 0
    r = _invoke(["fit", "--holdout", "largest", "--bootstrap", "50", "--no-figures"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    assert "21 runs" in r.output and "(14 fitted, 7 held out)" in r.output
    with RunStore(tmp_path / "scalinglab.db", readonly=True) as st:
        page = render_report(st)
    assert 'id="isoflops"' in page and "runs within 10% of each other" in page
    assert "14 runs fitted, 7 held out (largest)" in page
    table = page.split('id="runs-table"')[1].split("</table>")[0]
    rows = [re.findall(r'<td class="[^"]*" data-v="([^"]*)">([^<]*)</td>', row) for row in table.split("<tr>")[2:]]
    assert len(rows) == 21
    flops = [float(r[7][0]) for r in rows]
    assert flops == sorted(flops)                                  # by compute
    assert all(r[7][1] == format_quantity(float(r[7][0])) and r[3][1] == format_quantity(float(r[3][0])) for r in rows)
    assert not any("e+" in r[3][1] for r in rows)                 # parameter counts read 1.23M, not 1.23e+06
