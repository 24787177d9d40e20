import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scalinglab import trackers
from scalinglab.importers import ImportFormatError
from scalinglab.store import RunStore, StoreError
from scalinglab.train import checkpoint as ckpt_mod
from scalinglab.train.checkpoint import load_latest, save_checkpoint
from scalinglab.train.executors import InlineExecutor
from scalinglab.experiments.ladder import run_ladder
from scalinglab.train.ladder import LadderSpec
from test_train import KILL_SCRIPT, tiny_corpus  # noqa: F401  (fixture)

HERE = Path(__file__).parent


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, {"step": 1, "w": torch.ones(3)})
    real_save = torch.save

    def full_disk(obj, fh):
        fh.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, 2, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001.pt", "step_00000001.pt.sha256"]
    state, problems = load_latest(tmp_path)
    assert state["step"] == 1 and problems == []


def test_a_diverging_ladder_is_recorded_and_goes_on(tmp_path, tiny_corpus):  # noqa: F811
    spec = LadderSpec(budgets=(3e9,), sizes_per_budget=3, corpus=tiny_corpus, seq_len=32, batch_size=4, eval_tokens=1024,
                      n_evals=3, n_bootstrap=20, lr=80.0)
    with RunStore(tmp_path / "s.db") as st:
        rep = run_ladder(spec, st, checkpoint_dir=tmp_path / "ck", out=tmp_path / "o", verify=False, show_progress=False,
                         figures=False, log=lambda m: None)
        assert rep["training"]["diverged"] == 3 and rep["training"]["failed"] == 0
        assert "error" in rep["families"]["dense"] and len(rep["families"]["dense"]["diverged"]) == 3
        assert {r.status for r in st.runs()} == {"diverged"}


WRITER = """
import sys, time
from scalinglab.store import Run, RunStore
K = 25
with RunStore(sys.argv[1]) as st:
    for i in range(int(sys.argv[2])):
        run = Run(run_id=f"r{i}", name=f"r{i}", source="w", status="finished", n_total=1e6, tokens=1e9, final_loss=3.0)
        st.add_runs([run], curves={run.run_id: [{"step": s, "tokens": s, "flops": s, "loss": 3.0} for s in range(K)]})
"""


@pytest.mark.slow
def test_a_reader_never_sees_a_torn_store_while_a_writer_writes(tmp_path):
    db = tmp_path / "s.db"
    RunStore(db).close()
    script = tmp_path / "w.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(db), "400"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = 0
    try:
        while proc.poll() is None:
            with RunStore(db, readonly=True) as ro:
                for r in ro.runs():
                    assert len(ro.curve(r.run_id)) == 25       # a run is never visible without its whole curve
                seen = max(seen, len(ro.runs()))
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0 and seen > 0


@pytest.mark.slow
def test_sigint_stops_cleanly_with_a_checkpoint_and_resumes_exactly(tmp_path, tiny_corpus):  # noqa: F811
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT.replace("checkpoint_every_s=0.0", "checkpoint_every_s=1e9, progress=lambda i: print('step', i['step'], flush=True)"))
    straight = subprocess.run([sys.executable, str(script), tiny_corpus, str(tmp_path / "a"), "300"], capture_output=True,
                              text=True, check=True).stdout.split()
    # a job started in the background inherits SIGINT ignored; give the child Python's own handler back
    proc = subprocess.Popen([sys.executable, str(script), tiny_corpus, str(tmp_path / "b"), "300"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    for line in proc.stdout:
        if line.startswith("step") and int(line.split()[1]) >= 20:
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)     # keep reading: a closed pipe would stop the job with BrokenPipeError instead
    assert proc.returncode != 0
    assert list((tmp_path / "b").rglob("step_*.pt")), "SIGINT must leave a checkpoint"
    resumed = subprocess.run([sys.executable, str(script), tiny_corpus, str(tmp_path / "b"), "300"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert int(resumed[-1]) >= 20 and float(resumed[-2]) == float(straight[-2])


@pytest.mark.slow
def test_sigkill_the_driver_then_the_ladder_finishes_only_what_is_missing(tmp_path, tiny_corpus):  # noqa: F811
    env = dict(os.environ)
    args = [sys.executable, "-m", "scalinglab.cli", "ladder", "--preset", "smoke", "--budgets", "3e9,9e9", "--corpus", tiny_corpus, "--no-verify",
            "--executor", "inline", "--store", str(tmp_path / "s.db"), "--checkpoints", str(tmp_path / "ck"),
            "--out", str(tmp_path / "o"), "--bootstrap", "20", "--json"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600              # a loaded machine trains slowly; one finished run is enough to kill after
    finished = 0
    while time.time() < deadline and finished < 1:
        time.sleep(0.2)
        try:
            with RunStore(tmp_path / "s.db", readonly=True) as ro:
                finished = len(ro.runs(status="finished"))
        except (FileNotFoundError, StoreError):     # not there yet, or the driver is creating its tables
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with RunStore(tmp_path / "s.db", readonly=True) as ro:
        done_before = len(ro.runs(status=("finished", "diverged")))
    assert 1 <= done_before < 6
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    rep = json.loads(out.stdout)
    assert "waiting for" not in out.stderr      # the killed driver's leases are dropped, not waited out
    assert rep["training"]["skipped"] == done_before
    assert rep["training"]["trained"] + rep["training"]["diverged"] == 6 - done_before


@pytest.mark.slow
def test_ray_executor_lands_the_same_runs_as_the_local_one(tmp_path, tiny_corpus):  # noqa: F811
    ray = pytest.importorskip("ray")
    from scalinglab.train.executors import RayExecutor
    spec = LadderSpec(budgets=(2e9,), sizes_per_budget=3, corpus=tiny_corpus, seq_len=32, batch_size=4, eval_tokens=1024,
                      n_evals=3, n_bootstrap=0)
    threads = torch.get_num_threads()
    results = {}
    try:
        for name, ex in (("inline", InlineExecutor(threads=1)),
                         ("ray", RayExecutor(threads=1, init_kwargs={"num_cpus": 2}))):
            with RunStore(tmp_path / f"{name}.db") as st:
                run_ladder(spec, st, executor=ex, checkpoint_dir=tmp_path / f"ck-{name}", out=tmp_path / "o", verify=False,
                           show_progress=False, figures=False, log=lambda m: None)
                results[name] = {r.run_id: (r.status, r.final_loss, r.tokens, r.n_total) for r in st.runs()}
    finally:
        torch.set_num_threads(threads)
        if ray.is_initialized():
            ray.shutdown()
    assert len(results["ray"]) == 3 and results["ray"].keys() == results["inline"].keys()
    for k, (status, loss, tokens, n) in results["inline"].items():
        rs, rl, rt, rn = results["ray"][k]
        assert (rs, rt, rn) == (status, tokens, n) and rl == pytest.approx(loss, rel=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")      # raised inside mlflow's own dependencies
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_mlflow_import_from_a_real_tracking_store(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("ladder")
    for n in (1e6, 4e6):
        with mlflow.start_run(run_name=f"gpt-{n:.0e}"):
            mlflow.log_params({"n_params": n, "tokens": 20 * n})
            for step in range(30):
                mlflow.log_metric("val_loss", 5.0 - np.log(n) * 0.05 - step * 0.01, step=step)
    res = trackers.read_mlflow(uri, trackers.Mapping(n="n_params", d="tokens", loss="val_loss"))
    assert len(res.runs) == 2 and res.columns["points"] == 60
    r = next(x for x in res.runs if x.name == "gpt-4e+06")
    assert r.n_total == 4e6 and r.tokens == 8e7 and r.flops_6nd == 6 * 4e6 * 8e7
    assert len(res.curves[r.run_id]) == 30 and r.final_loss == pytest.approx(5.0 - np.log(4e6) * 0.05 - 0.29, rel=1e-6)
    with pytest.raises(ImportFormatError, match="no param/metric 'N'.*found: n_params"):
        trackers.read_mlflow(uri, trackers.Mapping(n="N", d="tokens", loss="val_loss"))
    with RunStore(tmp_path / "s.db") as st:
        trackers.write(res, st)
        assert len(st.runs()) == 2 and len(st.curve(r.run_id)) == 30


@pytest.mark.filterwarnings("ignore::DeprecationWarning")      # raised inside tensorboard's own dependencies
def test_tensorboard_import_reads_every_point(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter
    for name, n in (("small", 1e6), ("big", 8e6)):
        w = SummaryWriter(str(tmp_path / name))
        w.add_scalar("meta/n_params", n, 0)
        w.add_scalar("meta/tokens", 20 * n, 0)
        for step in range(12_000):                      # more than TensorBoard's 10,000-point default
            w.add_scalar("loss/val", 4.0 - step * 1e-4, step)
        w.close()
    res = trackers.read_tensorboard(tmp_path, trackers.Mapping(n="meta/n_params", d="meta/tokens", loss="loss/val"))
    assert res.columns["points"] == 24_000
    big = next(r for r in res.runs if r.name == "big")
    assert big.n_total == 8e6 and big.final_loss == pytest.approx(4.0 - 11_999e-4, rel=1e-6)
    with pytest.raises(ImportFormatError, match="no scalar tag 'loss/train'"):
        trackers.read_tensorboard(tmp_path, trackers.Mapping(n="meta/n_params", d="meta/tokens", loss="loss/train"))


class _FakeRun:
    def __init__(self, rec):
        self.id, self.name, self.config, self.summary = rec["id"], rec["name"], rec["config"], rec["summary"]
        self._history = rec["history"]
        self.sampled_history_calls = 0

    def scan_history(self, keys=None):
        return iter([{k: row[k] for k in keys if k in row} for row in self._history])

    def history(self, *a, **k):  # pragma: no cover - the importer must not use the sampled history
        raise AssertionError("history() samples 500 rows; scan_history() must be used")


class _FakeApi:
    def __init__(self, path):
        self.records = json.loads(path.read_text())["runs"]

    def runs(self, path):
        assert path == "lab/ladder"
        return [_FakeRun(r) for r in self.records]


def test_wandb_import_with_a_recorded_api_response():
    api = _FakeApi(HERE / "fixtures" / "wandb_runs.json")
    res = trackers.read_wandb("lab/ladder", trackers.Mapping(n="n_params", d="train_tokens", loss="val/loss"), api=api)
    assert [r.name for r in res.runs] == ["gpt-20M", "gpt-80M"]
    assert res.runs[1].final_loss == 3.02 and len(res.curves[res.runs[0].run_id]) == 5
    assert all(r.n_active == r.n_total > 0 for r in res.runs)      # as the CSV import fills it (dense: total = active)
    with pytest.raises(ImportFormatError, match="no config key 'tokens'"):
        trackers.read_wandb("lab/ladder", trackers.Mapping(n="n_params", d="tokens", loss="val/loss"), api=api)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_local_workers_exit_when_the_driver_is_killed(tmp_path, tiny_corpus):  # noqa: F811
    args = [sys.executable, "-m", "scalinglab.cli", "ladder", "--preset", "smoke", "--budgets", "3e9,9e9", "--corpus",
            tiny_corpus, "--no-verify", "--executor", "local", "--store", str(tmp_path / "s.db"), "--checkpoints",
            str(tmp_path / "ck"), "--out", str(tmp_path / "o"), "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    kids: list[int] = []
    while time.time() < deadline and len(kids) < 2:      # resource tracker + one worker
        time.sleep(0.2)
        kids = _children(proc.pid)
    assert kids, "the local executor should have started a worker process"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
        time.sleep(0.2)
    alive = [k for k in kids if Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text().split()[2]]
    assert not alive, f"orphaned processes still running: {alive}"


@pytest.mark.slow
def test_submitit_executor_runs_a_ladder_as_jobs(tmp_path, tiny_corpus):  # noqa: F811
    pytest.importorskip("submitit")
    from scalinglab.train.executors import SubmititExecutor
    spec = LadderSpec(budgets=(2e9,), sizes_per_budget=3, corpus=tiny_corpus, seq_len=32, batch_size=4, eval_tokens=1024,
                      n_evals=3, n_bootstrap=0)
    ex = SubmititExecutor(str(tmp_path / "jobs"), cluster="local", timeout_min=10, poll_s=0.2)
    with RunStore(tmp_path / "s.db") as st:
        rep = run_ladder(spec, st, executor=ex, checkpoint_dir=tmp_path / "ck", out=tmp_path / "o", verify=False,
                         show_progress=False, figures=False, log=lambda m: None)
        assert rep["training"]["trained"] == 3
        assert {r.status for r in st.runs()} == {"finished"} and all(st.curve(r.run_id) for r in st.runs())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_mlflow_import_from_a_local_mlruns_folder(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")       # to write the legacy folder store in the test
    folder = tmp_path / "mlruns"
    mlflow.set_tracking_uri(folder.as_uri())
    mlflow.set_experiment("ladder")
    with mlflow.start_run(run_name="tiny"):
        mlflow.log_params({"n_params": "2M", "tokens": "40M"})
        for step in range(5):
            mlflow.log_metric("loss", 4.0 - step * 0.1, step=step)
    res = trackers.read_mlflow(str(folder), trackers.Mapping(n="n_params", d="tokens"))
    assert res.runs[0].n_total == 2e6 and res.runs[0].tokens == 4e7 and res.runs[0].final_loss == pytest.approx(3.6)


def test_local_executor_keeps_its_worker_and_replaces_one_that_died_while_idle():
    from scalinglab.train.executors import LocalExecutor
    with LocalExecutor() as ex:
        pool = ex._started()
        first = pool.submit(os.getpid).result()
        assert ex._started() is pool and pool.submit(os.getpid).result() == first   # the same worker serves again
        os.kill(first, signal.SIGKILL)                                              # dies between two calls
        deadline = time.time() + 30
        while not getattr(pool, "_broken", False) and time.time() < deadline:
            time.sleep(0.05)
        fresh = ex._started()
        assert fresh is not pool and fresh.submit(os.getpid).result() not in (first, os.getpid())
    assert ex._pool is None and ex._queue is None
