"""Bad input, driven through the real CLI: every case exits 2 (or the documented code), shows no
traceback, names what was wrong and where, and leaves the folder byte-identical (no store created)."""
import hashlib
import json
import shutil
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from scalinglab.cli import app

from conftest import isoflop_runs

STORE = "scalinglab.db"


def _build(folder):
    """A folder as a user has it: a store with 45 runs, samples, scores and a fit; the files behind them."""
    N, D, L = isoflop_runs(budgets=np.logspace(18, 21.5, 5), sizes=9)
    (folder / "runs.csv").write_text("name,params,tokens,val_loss\n" + "\n".join(
        f"run-{i},{n:.6e},{d:.6e},{loss:.6f}" for i, (n, d, loss) in enumerate(zip(N, D, L))) + "\n")
    rng = np.random.default_rng(0)
    rows = [{"problem": f"q{p}", "n": 50, "c": int(rng.integers(0, 51)), "task": "toy", "model": "m"} for p in range(12)]
    (folder / "samples.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lines = ["model,C,task,metric,value"]
    for i, n in enumerate(np.geomspace(2e4, 2e6, 8)):
        c = 360 * n * n
        tl = 0.05 + 300 * c ** -0.2
        lines += [f"s{i},{c:.4g},addition:2,task_loss,{tl:.5f}", f"s{i},{c:.4g},addition:2,exact_match,{1 / (1 + np.exp(8 * (tl - 0.6))):.5f}"]
    (folder / "scores.csv").write_text("\n".join(lines) + "\n")
    (folder / "policy.toml").write_text('[[rule]]\nname = "r"\ntask = "addition:2"\nmetric = "exact_match"\nop = ">="\n'
                                       'threshold = 0.9\naction = "hold"\n')
    (folder / "notes.txt").write_text("not a table\n")
    (folder / "a_folder").mkdir()
    r = CliRunner()
    for args in (["import", "runs.csv", "--n-col", "params", "--d-col", "tokens", "--loss-col", "val_loss"],
                 ["samples", "import", "samples.jsonl"], ["scores", "import", "scores.csv"],
                 ["fit", "--law", "chinchilla", "--bootstrap", "0", "--no-figures"]):
        res = r.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    for extra in folder.glob(STORE + "-*"):
        extra.unlink()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("template")
    import os
    here = os.getcwd()
    os.chdir(folder)
    try:
        _build(folder)
    finally:
        os.chdir(here)
    return folder


def _snapshot(folder):
    """Every file's hash; SQLite's own side files (-shm, and an empty -wal a reader leaves) are not content."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))
            if not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


# ---- the stores a user can end up with
def _not_sqlite(f):
    (f / STORE).write_text("name,params\nx,1\n")


def _truncated(f):
    data = (f / STORE).read_bytes()
    (f / STORE).write_bytes(data[: len(data) // 3])


def _garbled(f):
    data = bytearray((f / STORE).read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)            # the header's tail and the schema page
    (f / STORE).write_bytes(bytes(data))


def _directory(f):
    (f / STORE).unlink()
    (f / STORE).mkdir()


def _newer(f):
    with sqlite3.connect(f / STORE) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()


def _empty_file(f):
    (f / STORE).write_bytes(b"")


STORES = {"not-sqlite": (_not_sqlite, "not a scalinglab store"), "truncated": (_truncated, STORE),
          "garbled": (_garbled, STORE), "directory": (_directory, "is a directory"),
          "newer-schema": (_newer, "newer than this scalinglab"), "empty-file": (_empty_file, "not a scalinglab store")}

# every command that reads or writes the store, as a user would call it
STORE_COMMANDS = [
    ["runs"], ["runs", "--json"], ["export", "out.csv"], ["fit", "--bootstrap", "0", "--no-figures"],
    ["backtest", "--bootstrap", "20", "--no-figures"], ["predict", "--law", "1", "--params", "7B", "--tokens", "1T"],
    ["plan", "--law", "1", "--compute", "1e23"], ["passk"], ["majk"], ["verifier", "--no-figures"],
    ["passk-forecast"], ["emergence", "--task", "addition:2"], ["forecast", "--task", "addition:2", "--compute", "1e13"],
    ["gate", "--policy", "policy.toml", "--plan-compute", "1e13"], ["report", "--out", "r.html"],
    ["import", "runs.csv", "--n-col", "params", "--d-col", "tokens", "--loss-col", "val_loss"],
    ["samples", "import", "samples.jsonl", "--on-duplicate", "skip"], ["scores", "import", "scores.csv", "--on-duplicate", "skip"],
]
STORE_CASES = [pytest.param(kind, cmd, id=f"{kind}:{' '.join(cmd[:2])}")
               for kind in ("not-sqlite", "garbled", "directory", "newer-schema")
               for cmd in STORE_COMMANDS]
STORE_CASES += [pytest.param(kind, cmd, id=f"{kind}:{cmd[0]}") for kind in ("truncated", "empty-file")
                for cmd in (["runs"], ["fit", "--bootstrap", "0", "--no-figures"], ["report", "--out", "r.html"])]


def _refused(r, before, after, needles, code=2):
    out = r.output
    assert r.exit_code == code, out
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in out
    for n in needles:
        assert n.lower() in out.lower(), (n, out)
    assert before == after, "the folder changed"


@pytest.mark.parametrize("kind, cmd", STORE_CASES)
def test_a_bad_store_is_named_and_left_alone(template, tmp_path, monkeypatch, kind, cmd):
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    spoil, needle = STORES[kind]
    spoil(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    r = CliRunner().invoke(app, cmd)
    _refused(r, before, _snapshot(tmp_path), [needle])


# ---- options and files: (args, words the message must hold)
BIG = "1" * 401
CASES = [
    # plan
    (["plan", "--preset", "chinchilla-2022", "--compute", "0"], ["--compute", "positive"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", "-1e23"], ["--compute", "positive"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", "nan"], ["--compute", "finite"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", "1e400"], ["--compute", "finite"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", "inf"], ["--compute", "finite"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", "lots"], ["--compute", "not a number"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", ""], ["--compute"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", BIG], ["--compute", "finite"]),
    (["plan", "--preset", "chinchilla-2022", "--gpu-hours", "-5"], ["--gpu-hours", "positive"]),
    (["plan", "--preset", "chinchilla-2022", "--gpu-hours", "1000", "--mfu", "0"], ["--mfu"]),
    (["plan", "--preset", "chinchilla-2022", "--gpu-hours", "1000", "--mfu", "1.5"], ["--mfu"]),
    (["plan", "--preset", "chinchilla-2022", "--gpu-hours", "1000", "--mfu", "nan"], ["--mfu"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", "1e23", "--unique-tokens", "0"], ["--unique-tokens", "positive"]),
    (["plan", "--preset", "chinchilla-2022", "--params", "-7B"], ["--params", "positive"]),
    (["plan", "--preset", "chinchilla-2022", "--target-loss", "-1"], ["--target-loss"]),
    (["plan", "--preset", "chinchilla-2022", "--target-loss", "nan"], ["--target-loss"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", "1e23", "--inference-tokens", "-1T"], ["--inference-tokens"]),
    (["plan", "--preset", "chinchilla-2022", "--compute", "1e23", "--total-per-active", "0.5"], ["--total-per-active"]),
    (["plan", "--preset", "chinchilla-2022", "--gpu-hours", "10", "--hardware", "TPU9"], ["--hardware", "TPU9"]),
    (["plan", "--preset", "nonsense-2030", "--compute", "1e23"], ["nonsense-2030"]),
    (["plan", "--law", "99", "--compute", "1e23"], ["99"]),
    # predict
    (["predict", "--preset", "chinchilla-2022", "--params", "-7B", "--tokens", "1T"], ["--params", "positive"]),
    (["predict", "--preset", "chinchilla-2022", "--params", "7B", "--tokens", "0"], ["--tokens", "positive"]),
    (["predict", "--preset", "chinchilla-2022", "--compute", "nan"], ["--compute", "finite"]),
    (["predict", "--preset", "chinchilla-2022", "--params", "7B", "--tokens", "1T", "--level", "1.5"], ["--level"]),
    (["predict", "--preset", "chinchilla-2022", "--compute", "1e23", "--tokens-per-param", "-20"], ["--tokens-per-param"]),
    (["predict", "--preset", "chinchilla-2022", "--params", "7B,8B,9B", "--tokens", "1T,2T"], ["--params", "--tokens"]),
    # fit, backtest
    (["fit", "--n-convention", "bogus", "--no-figures"], ["--n-convention", "n_total"]),
    (["fit", "--flop-convention", "12ND", "--no-figures"], ["--flop-convention", "6ND"]),
    (["fit", "--huber-delta", "-1", "--no-figures"], ["--huber-delta"]),
    (["fit", "--huber-delta", "nan", "--no-figures"], ["--huber-delta"]),
    (["fit", "--bootstrap", "-5", "--no-figures"], ["--bootstrap"]),
    (["fit", "--holdout", "N >> 3", "--no-figures"], ["--holdout"]),
    (["fit", "--law", "bogus", "--no-figures"], ["bogus"]),
    (["fit", "--bootstrap-kind", "wild", "--no-figures"], ["--bootstrap-kind"]),
    (["fit", "notes.txt", "--no-figures"], ["notes.txt"]),
    (["fit", "missing.csv", "--no-figures"], ["missing.csv"]),
    (["fit", "--family", "nothing-like-it", "--bootstrap", "0", "--no-figures"], ["nothing-like-it"]),
    (["backtest", "--level", "0", "--no-figures"], ["--level"]),
    (["backtest", "--max-cuts", "0", "--no-figures"], ["--max-cuts"]),
    (["backtest", "--axis", "Q", "--no-figures"], ["--axis"]),
    (["backtest", "--bootstrap", "5", "--no-figures"], ["--bootstrap"]),
    # pass@k and friends
    (["passk", "--k", "1.5"], ["--k"]),
    (["passk", "--k", "0"], ["--k"]),
    (["passk", "--k", "abc"], ["--k"]),
    (["passk", "--k", BIG], ["--k"]),
    (["passk", "--target", "1.5", "--no-figures"], ["--target"]),
    (["passk", "--target", "0", "--no-figures"], ["--target"]),
    (["passk", "--bootstrap", "-1", "--no-figures"], ["--bootstrap"]),
    (["passk", "missing.jsonl"], ["missing.jsonl"]),
    (["passk", "a_folder"], ["a_folder"]),
    (["passk", "--task", "no-such-task"], ["no-such-task"]),
    (["passk-forecast", "--k", "1.5"], ["--k"]),
    (["passk-forecast", "--backtest", "0"], ["--backtest"]),
    (["passk-forecast", "--distribution", "normal"], ["--distribution"]),
    (["passk-forecast", "--zero-mass", "maybe"], ["--zero-mass"]),
    (["passk-forecast", "--backtest", "50"], ["--backtest"]),
    (["majk", "--k", "0"], ["--k"]),
    (["majk", "--resamples", "0"], ["--resamples"]),
    (["verifier", "--tpr", "1.5"], ["--tpr"]),
    (["verifier", "--fpr", "2"], ["--fpr"]),
    (["verifier", "--fpr", "nan"], ["--fpr"]),
    (["verifier", "--cost", "-1"], ["--cost"]),
    (["verifier", "--k-max", "0"], ["--k-max"]),
    (["verifier", "--fpr-unsolved", "-0.1"], ["--fpr-unsolved"]),
    # cost
    (["cost", "train", "--params", "-7B", "--tokens", "1T"], ["--params", "positive"]),
    (["cost", "train", "--params", "7B", "--tokens", "0"], ["--tokens", "positive"]),
    (["cost", "train", "--params", "7B", "--tokens", "1T", "--mfu", "0"], ["--mfu"]),
    (["cost", "train", "--params", "7B", "--tokens", "1T", "--mfu", "2"], ["--mfu"]),
    (["cost", "train", "--params", "7B", "--tokens", "1T", "--gpus", "0"], ["--gpus"]),
    (["cost", "train", "--params", "7B", "--tokens", "1T", "--usd-per-hour", "-1"], ["--usd-per-hour"]),
    (["cost", "train", "--params", "7B", "--tokens", "1T", "--hardware", "TPU9"], ["TPU9"]),
    (["cost", "train", "--params", "7B", "--tokens", "1T", "--hardware-file", "missing.toml"], ["missing.toml"]),
    (["cost", "train", "--params", "7B", "--tokens", "1T", "--hardware-file", "notes.txt"], ["notes.txt"]),
    (["cost", "serve", "--params", "-7B"], ["--params", "positive"]),
    (["cost", "serve", "--params", "7B", "--context", "0"], ["--context"]),
    (["cost", "serve", "--params", "7B", "--context", "-5"], ["--context"]),
    (["cost", "serve", "--params", "7B", "--batch", "0"], ["--batch"]),
    (["cost", "serve", "--params", "7B", "--kv-precision", "bogus"], ["--kv-precision", "bf16"]),
    (["cost", "serve", "--params", "7B", "--precision", "int3"], ["--precision", "int4"]),
    (["cost", "serve", "--params", "7B", "--layers", "0"], ["--layers"]),
    (["cost", "serve", "--params", "7B", "--kv-heads", "0"], ["--kv-heads"]),
    (["cost", "serve", "--params", "7B", "--experts", "2", "--top-k", "3"], ["--top-k"]),
    (["cost", "serve", "--params", "7B", "--active-params", "8B"], ["--active-params"]),
    (["cost", "serve", "--params", "7B", "--gpus", "0"], ["--gpus"]),
    # the lab: refused before anything trains or is written
    (["ladder", "--preset", "smoke", "--workers", "0"], ["--workers"]),
    (["ladder", "--preset", "smoke", "--device", "tpu"], ["--device", "cpu"]),
    (["ladder", "--preset", "smoke", "--threads", "-1"], ["--threads"]),
    (["ladder", "--preset", "smoke", "--budgets", "1e30"], ["--budgets"]),
    (["ladder", "--preset", "smoke", "--budgets", "-1e12"], ["--budgets", "-1e12"]),
    (["ladder", "--preset", "smoke", "--budgets", "abc"], ["--budgets"]),
    (["ladder", "--preset", "smoke", "--sizes-per-budget", "2"], ["--sizes-per-budget"]),
    (["ladder", "--preset", "smoke", "--grid-seeds", "0"], ["--grid-seeds"]),
    (["ladder", "--preset", "smoke", "--grid-seeds", "17"], ["--grid-seeds"]),
    (["ladder", "--preset", "smoke", "--dtype", "fp8"], ["--dtype"]),
    (["ladder", "--preset", "smoke", "--schedule", "linear"], ["--schedule"]),
    (["ladder", "--preset", "smoke", "--executor", "kubernetes"], ["--executor"]),
    (["ladder", "--preset", "smoke", "--verify-multiplier", "0"], ["--verify-multiplier"]),
    (["ladder", "--preset", "smoke", "--lr", "-1"], ["--lr"]),
    (["ladder", "--preset", "smoke", "--lr", "nan"], ["--lr"]),
    (["ladder", "--preset", "smoke", "--tokenizer", "sentencepiece"], ["--tokenizer"]),
    (["ladder", "--preset", "smoke", "--corpus", "no/such/folder"], ["no/such/folder"]),
    (["ladder", "--preset", "smoke", "--corpus", "task:juggling:2"], ["juggling"]),
    (["ladder", "--preset", "colossal"], ["colossal"]),
    (["ladder", "--preset", "smoke", "--bootstrap", "-1"], ["--bootstrap"]),
    (["ladder", "--preset", "smoke", "--gpus-per-run", "-1"], ["--gpus-per-run"]),
    (["ladder", "--preset", "smoke", "--moe", "--moe-only"], ["--moe"]),
    (["lr-check", "--at", "middle"], ["--at"]),
    (["lr-check", "--preset", "colossal"], ["colossal"]),
    (["sample", "--ladder", "--n", "0"], ["--n"]),
    (["sample", "--ladder", "--problems", "0"], ["--problems"]),
    (["sample", "--ladder", "--temperature", "-1"], ["--temperature"]),
    (["sample", "--ladder", "--task", "juggling:2"], ["juggling"]),
    (["sample", "--ladder", "--format", "poem"], ["--format"]),
    (["sample", "no/such/checkpoint"], ["no/such/checkpoint"]),
    (["distill", "--teacher", "x", "--compute", "-1"], ["--compute"]),
    (["distill", "--teacher", "x", "--compute", "1e12", "--alpha", "2"], ["--alpha"]),
    (["distill", "--teacher", "x", "--compute", "1e12", "--temperature", "0"], ["--temperature"]),
    (["distill", "--teacher", "no-such-run", "--compute", "1e12"], ["no-such-run"]),
    (["quantize", "--bits", "3"], ["--bits"]),
    (["evaluate", "--tasks", "juggling:2"], ["juggling"]),
    (["evaluate", "--problems", "0"], ["--problems"]),
    # capabilities and gates
    (["emergence", "--task", "no-such-task"], ["no-such-task"]),
    (["forecast", "--task", "addition:2", "--compute", "-1"], ["--compute"]),
    (["forecast", "--task", "addition:2", "--compute", "1e13", "--threshold", "2"], ["--threshold"]),
    (["forecast", "--task", "addition:2", "--backtest", "-1"], ["--backtest"]),
    (["forecast", "--task", "addition:2", "--compute", "1e13", "--chance", "1.5"], ["--chance"]),
    (["forecast", "--task", "addition:2", "--compute", "1e13", "--variant", "magic"], ["--variant"]),
    (["forecast", "--task", "addition:2", "--compute", "1e13", "--bootstrap", "-1"], ["--bootstrap"]),
    (["gate", "--policy", "missing.toml", "--plan-compute", "1e13"], ["missing.toml"]),
    (["gate", "--policy", "notes.txt", "--plan-compute", "1e13"], ["notes.txt"]),
    (["gate", "--policy", "bad_rule.toml", "--plan-compute", "1e13"], ["rule"]),
    (["gate", "--policy", "no_rules.toml", "--plan-compute", "1e13"], ["[[rule]]"]),
    (["gate", "--policy", "policy.toml", "--plan-compute", "-1"], ["--plan-compute"]),
    (["gate", "--policy", "policy.toml", "--plan-params", "7B"], ["--plan-tokens"]),
    (["gate", "--policy", "policy.toml", "--plan-params", "7B", "--plan-tokens", "1T", "--plan-compute", "1e23"], ["not both"]),
    # importers
    (["import", "missing.csv"], ["missing.csv"]),
    (["import", "a_folder"], ["a_folder"]),
    (["import", "empty.csv"], ["empty.csv"]),
    (["import", "dup_cols.csv"], ["duplicate", "params"]),
    (["import", "runs.csv", "--mapping", "missing.json"], ["missing.json"]),
    (["import", "runs.csv", "--mapping", "notes.txt"], ["notes.txt"]),
    (["import", "runs.csv", "--n-convention", "bogus"], ["--n-convention"]),
    (["import", "runs.csv", "--on-duplicate", "merge"], ["--on-duplicate"]),
    (["import", "big.jsonl"], ["params"]),
    (["import", "inf.csv"], ["inf"]),
    (["import", "neg.csv"], ["params"]),
    (["import", "c_vs_6nd.csv"], ["6ND", "--trust-flops"]),
    (["samples", "import", "counts_inf.jsonl"], ["inf"]),
    (["samples", "import", "counts_frac.jsonl"], ["2.5"]),
    (["samples", "import", "counts_c_gt_n.jsonl"], ["c"]),
    (["samples", "import", "counts_big.jsonl"], ["n"]),
    (["samples", "import", "tokens_neg.jsonl"], ["tokens"]),
    (["samples", "import", "missing.jsonl"], ["missing.jsonl"]),
    (["scores", "import", "missing.csv"], ["missing.csv"]),
    (["scores", "import", "scores.csv", "--map", "nonsense"], ["--map"]),
    (["import-tracker", "comet", "x"], ["comet"]),
    (["import-tracker", "mlflow", "sqlite:///missing-mlflow.db", "--n", "n", "--d", "d"], ["missing-mlflow.db"]),
    (["import-tracker", "tensorboard", "no/such/logs", "--n", "n", "--d", "d"], ["no/such/logs"]),
    (["import-tracker", "mlflow", "mlruns", "--n-convention", "bogus"], ["--n-convention"]),
    # public model tables
    (["models", "import", "missing.csv"], ["missing.csv"]),
    (["models", "import", "notes.txt"], ["notes.txt"]),
    (["trends", "--example", "--metric", "bogus"], ["bogus", "mmlu"]),
    (["trends", "--example", "--metric", "mmlu", "--k", "0"], ["--k"]),
    (["trends", "--example", "--metric", "mmlu", "--break", "2030-99"], ["--break", "month"]),
    (["trends", "--example", "--metric", "mmlu", "--level", "2"], ["--level"]),
    (["observe", "law", "--example", "--target", "bogus"], ["bogus", "gsm8k"]),
    (["observe", "backtest", "--example", "--target", "gsm8k", "--kind", "magic"], ["--kind"]),
    (["observe", "law", "--example", "--target", "gsm8k", "--compute", "-1"], ["--compute"]),
    (["observe", "saturation", "--example", "--bootstrap", "-5"], ["--bootstrap"]),
    (["runs", "--status", "done"], ["--status", "finished"]),
    (["runs", "--limit", "-1"], ["--limit"]),
    # compare
    (["compare", "--baseline", "dense", "--candidate", "dense"], ["distinct"]),
    (["compare", "--baseline", "dense", "--candidate", "moe"], ["no finished runs", "dense", "--preset"]),
    (["compare", "--baseline", "dense", "--candidate", "moe", "--bootstrap", "5"], ["--bootstrap"]),
    (["compare", "--baseline", "dense", "--candidate", "moe", "--budgets", "1e12"], ["--budgets", "--preset"]),
    (["compare", "--baseline", "dense", "--candidate", "moe", "--grid-seeds", "2"], ["--grid-seeds", "--preset"]),
    (["compare", "--preset", "smoke", "--baseline", "dense", "--candidate", "moe", "--grid-seeds", "0"], ["--grid-seeds"]),
    (["compare", "--preset", "huge", "--baseline", "dense", "--candidate", "moe"], ["--preset", "huge"]),
    (["compare", "--preset", "smoke", "--baseline", "dense", "--candidate", "wat"], ["wat", "accepted"]),
    (["compare", "--preset", "smoke", "--baseline", "dense", "--candidate", "moe:n_experts=0"], ["n_experts", "positive"]),
    (["compare", "--preset", "smoke", "--baseline", "dense", "--candidate", "muon:top_k=2"], ["top_k", "arch=moe"]),
    (["compare", "--preset", "smoke", "--baseline", "dense", "--candidate", "moe", "--budgets", "nan"], ["--budgets", "finite"]),
    # output places
    (["export", "out.txt"], ["out.txt"]),
    (["report", "--out", "a_folder"], ["a_folder", "directory"]),
    (["serve", "--port", "70000"], ["--port"]),
]


def _files(f):
    (f / "bad_rule.toml").write_text('rule = [1, 2]\n')
    (f / "no_rules.toml").write_text('title = "empty"\n')
    (f / "empty.csv").write_text("")
    (f / "dup_cols.csv").write_text("name,params,tokens,loss,params\na,1e6,2e7,3.0,2e6\n")
    (f / "big.jsonl").write_text(f'{{"name": "a", "params": {BIG}, "tokens": 2e7, "loss": 3.0}}\n')
    (f / "inf.csv").write_text("name,params,tokens,loss\na,inf,2e7,3.0\n")
    (f / "neg.csv").write_text("name,params,tokens,loss\na,-1e6,2e7,3.0\n")
    (f / "c_vs_6nd.csv").write_text("name,params,tokens,flops,loss\na,1e6,2e7,1.2e19,3.0\nb,2e6,2e7,2.4e14,2.9\n")
    for name, row in (("counts_inf", {"problem": "a", "n": "inf", "c": 1}), ("counts_frac", {"problem": "a", "n": 2.5, "c": 1.7}),
                      ("counts_c_gt_n", {"problem": "a", "n": 5, "c": 7}), ("counts_big", {"problem": "a", "n": int(BIG), "c": 1}),
                      ("tokens_neg", {"problem": "a", "sample_id": 0, "correct": True, "tokens": -5})):
        (f / f"{name}.jsonl").write_text(json.dumps(row) + "\n")


@pytest.mark.parametrize("args, needles", [pytest.param(a, n, id=" ".join(a)[:80]) for a, n in CASES])
def test_a_bad_option_or_file_is_refused_and_nothing_is_written(template, tmp_path, monkeypatch, args, needles):
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    r = CliRunner().invoke(app, args)
    _refused(r, before, _snapshot(tmp_path), needles)


@pytest.mark.parametrize("args", [
    ["import", "neg.csv"], ["samples", "import", "counts_frac.jsonl"], ["passk", "--k", "0"], ["plan", "--compute", "nan"],
    ["cost", "serve", "--params", "-7B"], ["ladder", "--workers", "0"], ["runs"], ["gate", "--policy", "missing.toml"]])
def test_refused_in_an_empty_folder_creates_no_store(tmp_path, monkeypatch, args):
    _files(tmp_path)
    (tmp_path / "notes.txt").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output
    assert _snapshot(tmp_path) == before and not (tmp_path / STORE).exists()


def test_the_corpus_is_large_enough():
    assert len(CASES) + len(STORE_CASES) >= 120


# ---- what passes must pass intact: markup in names, quoted newlines, the file's own C when trusted
def test_names_with_markup_are_printed_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "runs.csv").write_text('name,params,tokens,loss\n"[/]",1e6,2e7,3.0\n"[bold red]x",2e6,4e7,2.9\n'
                                       '"two\nlines\u2028sep",3e6,6e7,2.8\n')
    r = CliRunner().invoke(app, ["import", "runs.csv"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["runs"])
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "[/]" in r.output and "[bold red]x" in r.output
    runs = json.loads(CliRunner().invoke(app, ["runs", "--json"]).stdout)["runs"]
    assert sorted(x["name"] for x in runs) == sorted(["[/]", "[bold red]x", "two\nlines\u2028sep"])


def test_the_files_compute_is_used_only_when_trusted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs.csv").write_text("name,params,tokens,flops,loss\na,1e6,2e7,1.2e19,3.0\nb,2e6,2e7,2.4e14,2.9\n")
    r = CliRunner().invoke(app, ["import", "runs.csv"])
    assert r.exit_code == 2 and "100,000 x 6ND" not in r.output and "1e+05 x 6ND" in r.output.replace("\n", " "), r.output
    assert not (tmp_path / STORE).exists()
    r = CliRunner().invoke(app, ["import", "runs.csv", "--trust-flops", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert any("--trust-flops" in d for d in out["derived"])
    runs = {x["name"]: x for x in json.loads(CliRunner().invoke(app, ["runs", "--json"]).stdout)["runs"]}
    assert runs["a"]["flops_6nd"] == pytest.approx(1.2e19)


def test_the_dashboard_refuses_a_foreign_host_header(template):
    pytest.importorskip("starlette")
    import asyncio

    from scalinglab.report.dashboard import create_app

    def status(host: str) -> int:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/api/runs", "raw_path": b"/api/runs", "query_string": b"",
                 "headers": [(b"host", host.encode())], "http_version": "1.1", "scheme": "http", "root_path": "",
                 "server": ("127.0.0.1", 8765), "client": ("127.0.0.1", 50000)}
        asyncio.run(create_app(template / STORE)(scope, receive, send))
        return sent[0]["status"]

    assert status("127.0.0.1:8765") == 200 and status("localhost:8765") == 200
    assert status("evil.example:8765") == 400           # a DNS-rebinding page's request
