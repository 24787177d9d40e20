import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scalinglab.experiments.ladder import fit_lr_optimum, run_ladder
from scalinglab.store import RunStore
from scalinglab.train import data as data_mod
from scalinglab.train.checkpoint import load_latest, save_checkpoint
from scalinglab.train.config import ModelConfig, RunConfig, param_counts, resolve_horizon
from scalinglab.train.data import batch_offsets, get_batch, is_val, load_tokens
from scalinglab.train.ladder import PRESETS, LadderSpec, design_ladder, ladder_compute, lease_key, replica_seed
from scalinglab.train.run import eval_steps, lr_at, run_id_of, to_store_record, train_run


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """A small real-text corpus (a slice of the standard library) in its own cache."""
    root = tmp_path_factory.mktemp("corpus")
    _, files = data_mod.stdlib_files()
    for p in files[:60]:
        (root / p.name).write_bytes(p.read_bytes())
    os.environ["SCALINGLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return str(root)


def tiny_cfg(corpus, **kw):
    model = ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=32, **kw.pop("model", {}))
    base = dict(model=model, corpus=corpus, horizon="steps", horizon_value=24, batch_size=4, n_evals=4,
                eval_tokens=1024, lr=3e-3)
    base.update(kw)
    return RunConfig(**base)


def test_horizon_resolves_each_kind_to_steps():
    m = ModelConfig(seq_len=32)
    n = 10_000
    for kind, value, steps in (("steps", 7, 7), ("tokens", 4 * 32 * 5, 5), ("flops", 6 * n * 4 * 32 * 3, 3),
                               ("tokens_per_param", 4 * 32 * 9 / n, 9)):
        h = resolve_horizon(RunConfig(model=m, horizon=kind, horizon_value=value, batch_size=4), n)
        assert h["steps"] == steps and h["tokens"] == steps * 128 and h["flops_6nd"] == 6 * n * h["tokens"]
    with pytest.raises(ValueError, match="horizon must be one of"):
        RunConfig(model=m, horizon="epochs")


def test_schedules():
    cfg = RunConfig(model=ModelConfig(), lr=1.0, min_lr_frac=0.1, warmup_frac=0.1)
    lrs = [lr_at(cfg, s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    wsd = dataclasses.replace(cfg, schedule="wsd", cooldown_frac=0.2)
    w = [lr_at(wsd, s, 100) for s in range(100)]
    assert w[50] == w[79] == 1.0 and w[80] < 1.0 and w[-1] == pytest.approx(0.1)
    # 1-sqrt cooldown (Hägele et al. 2024): at a quarter of the cooldown, 1 - sqrt(1/4) = half the way down
    assert w[84] == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(5 / 20)))
    assert eval_steps(1000, 8)[-1] == 1000 and len(eval_steps(1000, 8)) >= 6


def test_batches_are_a_pure_function_of_seed_and_step():
    tokens = np.arange(10_000, dtype=np.uint8)
    a = get_batch(tokens, 16, 4, seed=3, step=11)
    b = get_batch(tokens, 16, 4, seed=3, step=11)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(batch_offsets(10_000, 16, 4, 3, 11), batch_offsets(10_000, 16, 4, 3, 12))
    x, y = a
    assert np.array_equal(x[:, 1:], y[:, :-1])


def test_stdlib_corpus_split_and_cache(tmp_path, monkeypatch):
    _, files = data_mod.stdlib_files()
    assert len(files) > 500
    names = [str(p) for p in files]
    frac = np.mean([is_val(n) for n in names])
    assert 0.005 < frac < 0.05
    assert is_val(names[0]) == is_val(names[0])


def test_user_corpus_and_errors(tmp_path, tiny_corpus):
    d = load_tokens(tiny_corpus)
    assert d.vocab_size == 256 and d.train.size > 10_000 and d.val.size > 0
    again = load_tokens(tiny_corpus)
    assert again.corpus_hash == d.corpus_hash and isinstance(again.train, np.memmap)
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"text": "hello"}\n{"nope": 1}\n')
    with pytest.raises(ValueError, match="line 2"):
        load_tokens(str(bad))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_tokens(str(tmp_path / "missing"))


def test_bpe_tokenizer_option(tiny_corpus):
    d = load_tokens(tiny_corpus, "bpe", bpe_vocab=300)
    assert d.vocab_size == 300 and d.train.dtype == np.uint16
    assert d.train.size < load_tokens(tiny_corpus).train.size   # BPE compresses bytes


def test_interrupted_and_resumed_equals_straight_run(tmp_path, tiny_corpus):
    cfg = tiny_cfg(tiny_corpus)
    straight = train_run(cfg)
    first = train_run(cfg, checkpoint_dir=tmp_path, stop_after_steps=10)
    assert first.status == "interrupted"
    resumed = train_run(cfg, checkpoint_dir=tmp_path)
    assert resumed.resumed_from_step == 10 and resumed.status == "finished"
    a = [p["loss"] for p in straight.curve if p["split"] == "val"]
    b = [p["loss"] for p in resumed.curve if p["split"] == "val"]
    assert a == b
    # the smoothed training loss too: its running mean is in the checkpoint
    assert [p for p in resumed.curve if p["split"] == "train"] == [p for p in straight.curve if p["split"] == "train"]


@pytest.mark.parametrize("mixer", ["ssm", "hybrid"])
def test_state_space_and_hybrid_models_train_resume_and_learn(tmp_path, tiny_corpus, mixer):
    """The SSM mixers through the real run: loss falls, resume is exact, the run records its mixer."""
    plain = tiny_cfg(tiny_corpus, horizon_value=40, lr=1e-2)
    cfg = dataclasses.replace(plain, model=dataclasses.replace(plain.model, n_layers=2, mixer=mixer))
    straight = train_run(cfg)
    val = [p["loss"] for p in straight.curve if p["split"] == "val"]
    assert straight.status == "finished" and val[-1] < val[0] - 0.5
    assert train_run(cfg, checkpoint_dir=tmp_path, stop_after_steps=15).status == "interrupted"
    resumed = train_run(cfg, checkpoint_dir=tmp_path)
    assert [p["loss"] for p in resumed.curve if p["split"] == "val"] == val
    assert to_store_record(cfg, straight, name="r", family=mixer)[0].config["model"]["mixer"] == mixer
    assert run_id_of(cfg) != run_id_of(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, mixer="attention")))


def test_diverged_run_is_recorded_not_dropped(tmp_path, tiny_corpus):
    cfg = tiny_cfg(tiny_corpus, lr=50.0, warmup_frac=0.01, grad_clip=0.0, diverge_factor=1.05, horizon_value=40)
    res = train_run(cfg)
    assert res.status == "diverged" and res.final_loss is None and res.reason
    run, curve = to_store_record(cfg, res, name="boom", family="dense")
    with RunStore(tmp_path / "s.db") as st:
        st.upsert_run(run)
        assert st.run(run.run_id).status == "diverged"


def test_checkpoint_corruption_falls_back_and_pickles_cannot_run_code(tmp_path):
    folder = tmp_path / "ck"
    save_checkpoint(folder, 1, {"step": 1, "w": torch.ones(2)})
    save_checkpoint(folder, 2, {"step": 2, "w": torch.ones(2)})
    newest = folder / "step_00000002.pt"
    newest.write_bytes(newest.read_bytes()[:20])               # truncated
    state, problems = load_latest(folder)
    assert state["step"] == 1 and "checksum mismatch" in problems[0]

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    import hashlib
    import pickle
    evil = folder / "step_00000009.pt"
    evil.write_bytes(pickle.dumps({"step": 9, "x": Evil()}))
    (folder / "step_00000009.pt.sha256").write_text(hashlib.sha256(evil.read_bytes()).hexdigest())
    state, problems = load_latest(folder)
    assert state["step"] == 1 and any("refused to load" in p for p in problems)
    assert not (tmp_path / "pwned").exists()


def test_wsd_branches_share_their_trunk_and_match_a_straight_run(tmp_path, tiny_corpus):
    """Two branches of one trunk: the longer one starts from the shorter one's branch point and ends exactly
    where a run trained from scratch (no trunk) ends."""
    data = load_tokens(tiny_corpus, "byte")
    m = ModelConfig(d_model=16, n_layers=1, n_heads=2, seq_len=32)
    kw = dict(model=m, corpus=tiny_corpus, horizon="steps", batch_size=4, schedule="wsd", warmup_steps=5,
              eval_tokens=1024)
    short, long = RunConfig(horizon_value=60, **kw), RunConfig(horizon_value=150, **kw)
    assert short.trunk_key_dict() == long.trunk_key_dict() and run_id_of(short) != run_id_of(long)
    a = train_run(short, checkpoint_dir=tmp_path / "ck", data=data)
    b = train_run(long, checkpoint_dir=tmp_path / "ck", data=data)
    assert a.branch_step == 48 and a.shared_prefix_steps == 0
    assert b.branch_step == 120 and b.shared_prefix_steps == 48 and b.resumed_from_step == 48
    straight = train_run(long, data=data)
    assert straight.final_loss == b.final_loss
    assert [p["loss"] for p in straight.curve if p["split"] == "val"] == [p["loss"] for p in b.curve if p["split"] == "val"]


def test_two_workers_run_a_trunks_branches_in_turn_and_share_idle_threads(tmp_path, tiny_corpus):
    """Two local workers and two WSD trunks of two branches each: the branches of one trunk never run at once
    (the later one resumes from the earlier one's branch point, as on one worker), the trunks run side by
    side, and a task started with fewer groups left than workers gets the idle workers' threads."""
    from scalinglab.train.executors import LocalExecutor, Task
    from scalinglab.train.ladder import lease_key
    kw = dict(corpus=tiny_corpus, horizon="steps", batch_size=4, schedule="wsd", warmup_steps=5, eval_tokens=1024)
    cfgs = [RunConfig(model=ModelConfig(d_model=d, n_layers=1, n_heads=2, seq_len=32), horizon_value=h, **kw)
            for d in (16, 24) for h in (60, 150)]
    tasks = [Task(key=run_id_of(c), config=c.to_dict(), checkpoint_dir=str(tmp_path / "ck"), group=lease_key(c))
             for c in cfgs]
    assert len({t.group for t in tasks}) == 2
    results = {}
    with LocalExecutor(workers=2, threads=1) as ex:
        assert ex._threads_for(tasks[0], [], {}) == 2 and ex._threads_for(tasks[0], tasks[1:2], {}) == 2
        assert ex._threads_for(tasks[0], tasks[2:], {}) == 1
        ex.run(tasks, lambda *a: None, lambda t, r, e: results.setdefault(t.key, (r, e)))
    assert all(e is None for _, e in results.values())
    for short, long in ((tasks[0], tasks[1]), (tasks[2], tasks[3])):
        assert results[short.key][0].shared_prefix_steps == 0
        assert results[long.key][0].shared_prefix_steps == 48 and results[long.key][0].resumed_from_step == 48


def test_cluster_executors_release_a_trunks_branches_in_turn():
    from scalinglab.train.executors import Task, _Chains
    t = {k: Task(key=k, config={}, group=g) for k, g in
         (("a1", "A"), ("a2", "A"), ("b1", "B"), ("c", None), ("a3", "A"), ("b2", "B"))}
    ch = _Chains(t.values())
    assert [x.key for x in ch.take()] == ["a1", "b1", "c"] and ch.take() == []
    ch.finished(t["c"]); ch.finished(t["a1"])
    assert [x.key for x in ch.take()] == ["a2"]
    ch.finished(t["b1"]); ch.finished(t["a2"])
    assert [x.key for x in ch.take()] == ["b2", "a3"]
    ch.finished(t["b2"]); ch.finished(t["a3"])
    assert ch.take() == []


def test_ladder_design_shares_sizes_and_counts_shared_compute_once():
    spec = LadderSpec(budgets=(5e10, 1.5e11, 4.5e11, 1.35e12), schedule="wsd")
    t0 = time.perf_counter()
    entries = design_ladder(spec)
    assert time.perf_counter() - t0 < 1.0
    assert len(entries) == 20
    comp = ladder_compute(entries)
    # by hand: each trunk's longest prefix once, plus every cooldown
    trunks, cool = {}, 0.0
    for e in entries:
        n = param_counts(e.config.model)["active"]
        steps = resolve_horizon(e.config, n)["steps"]
        branch = steps - round(0.2 * steps)
        trunks[e.config.model] = max(trunks.get(e.config.model, 0), branch * 6 * n * e.config.tokens_per_step)
        cool += (steps - branch) * 6 * n * e.config.tokens_per_step
    assert comp["trained_flops"] == pytest.approx(sum(trunks.values()) + cool)
    assert comp["trunks"] == len(trunks) < 20 and comp["saved_fraction"] > 0.15
    assert all(e.config.warmup_steps >= 1 for e in entries)


def test_grid_seeds_train_every_grid_run_again_on_a_trunk_of_its_own():
    one = LadderSpec(budgets=(5e10, 1.5e11, 4.5e11), schedule="wsd", seed=3)
    two = dataclasses.replace(one, grid_seeds=2)
    e1, e2 = design_ladder(one), design_ladder(two)
    assert len(e2) == 2 * len(e1)
    # the first seed's runs are the one-seed ladder's, in its order: a one-seed store resumes into two seeds
    assert [(e.run_id, e.name) for e in e2 if e.config.seed == 3] == [(e.run_id, e.name) for e in e1]
    replicas = [e for e in e2 if e.config.seed != 3]
    assert {e.config.seed for e in replicas} == {replica_seed(3, 1)} and replica_seed(3, 0) == 3
    by_name = {e.name: e for e in e1}
    for r in replicas:
        base = by_name[r.name.removesuffix("-s1")]
        assert r.name == base.name + "-s1" and r.budget == base.budget
        assert dataclasses.replace(r.config, seed=3) == base.config     # only the seed differs
    assert len({e.run_id for e in e2}) == len(e2)
    assert not {lease_key(e.config) for e in replicas} & {lease_key(e.config) for e in e1}   # trunks of their own
    c1, c2 = ladder_compute(e1), ladder_compute(e2)
    assert c2["trunks"] == 2 * c1["trunks"] and c2["trained_flops"] == pytest.approx(2 * c1["trained_flops"])
    assert PRESETS["quick"].grid_seeds == 2 and PRESETS["standard"].grid_seeds == 1
    for bad in (0, 17, 2.0):
        with pytest.raises(ValueError, match="grid seeds"):
            LadderSpec(grid_seeds=bad)


def test_lr_rule_fit_recovers_a_known_optimum_line():
    rng = np.random.default_rng(0)
    n, lr, loss = [], [], []
    for size, c in ((2e4, 2.0), (6e4, 1.8)):
        opt = math.log(4e-3) - 0.3 * math.log(size / 2e4)
        for f in (0.25, 0.5, 1.0, 2.0, 4.0):
            x = opt + math.log(f) + 0.1
            n.append(size)
            lr.append(math.exp(x))
            loss.append((c + 0.02 * (x - opt) ** 2) * (1 + 1e-4 * rng.standard_normal()))
    fit = fit_lr_optimum(np.array(n), np.array(lr), np.array(loss))
    assert fit["rule"]["lr_ref"] == pytest.approx(4e-3, rel=0.02)
    assert fit["rule"]["lr_exponent"] == pytest.approx(0.3, abs=0.02)
    s = fit["per_size"][0]
    half = math.sqrt(0.01 * 2.0 / 0.02)
    assert s["flat_region"][0] == pytest.approx(4e-3 * math.exp(-half), rel=0.03)


def test_lr_knots_interpolate_in_log_space_and_hold_beyond_the_outermost():
    spec = LadderSpec(lr_knots=((4e4, 6e-3), (1e4, 2.4e-2)))
    assert spec.lr_for(2e4) == pytest.approx(1.2e-2, rel=1e-9)        # halfway in log N: the geometric mean
    assert spec.lr_for(1e3) == pytest.approx(2.4e-2) and spec.lr_for(1e6) == pytest.approx(6e-3)
    assert spec.hp_rule()["lr_knots"] == [[1e4, 2.4e-2], [4e4, 6e-3]]
    with pytest.raises(ValueError):
        LadderSpec(lr_knots=((1e4, -1.0),))


def test_the_quick_sweep_starts_from_its_prior_at_the_sizes_it_sweeps():
    from scalinglab.experiments.ladder import CHECK_FACTORS, sweep_entries, sweep_points
    from scalinglab.train.ladder import QUICK_LR_PRIOR, candidate_shapes
    spec = PRESETS["quick"]
    _, counts = candidate_shapes(spec, 256, "dense")
    points = sweep_points(spec, 256)
    # the prior's knots are the very sizes the quick sweep trains (byte vocabulary), each at its budget
    assert [(float(counts[i]), b) for i, b in points] == [(n, b) for (n, _), b in zip(QUICK_LR_PRIOR, (1.5e11, 1.5e11, 3e11))]
    lrs = sorted(e.config.lr for e in sweep_entries(spec, 256, "dense", points[:1]))
    assert lrs == pytest.approx([0.011, 0.022, 0.044], rel=1e-12)
    assert spec.lr_for(1e6) == pytest.approx(0.006)         # constant beyond the outermost knot
    assert len(CHECK_FACTORS) == 5 and PRESETS["standard"].lr_knots == ()


def test_an_lr_sweep_whose_best_is_at_an_edge_goes_two_factors_further_that_way():
    from scalinglab.experiments.ladder import _edge_entries
    from scalinglab.train.ladder import candidate_shapes, run_config
    spec = LadderSpec(budgets=(1e11, 3e11))
    shapes, _ = candidate_shapes(spec, 256, "dense")
    points = [(2, 1e11), (5, 1e11), (8, 1e11)]

    class R:
        def __init__(self, loss):
            self.final_loss = loss

    done = []
    for i, losses in ((2, (3.0, 2.8, 2.6)), (5, (2.5, 2.4, 2.45)), (8, (2.2, 2.3, 2.4))):
        base = run_config(spec, shapes[i], 1e11)
        for f, loss in zip((0.5, 1.0, 2.0), losses):
            e = type("E", (), {})()
            e.config = dataclasses.replace(base, lr=base.lr * f)
            done.append((e, R(loss)))
    more = _edge_entries(spec, shapes, points, done, "dense")
    by_shape = {}
    for e in more:
        by_shape.setdefault(e.config.model, []).append(e.config.lr)
    base_lr = spec.lr_for(param_counts(shapes[2])["active"])
    assert sorted(by_shape[shapes[2]]) == pytest.approx([4 * base_lr, 8 * base_lr])     # best at the top: higher
    assert shapes[5] not in by_shape                                                       # interior: nothing more
    assert sorted(by_shape[shapes[8]]) == pytest.approx([0.125 * spec.lr_for(param_counts(shapes[8])["active"]),
                                                         0.25 * spec.lr_for(param_counts(shapes[8])["active"])])
    assert all(e.role == "lr-sweep" for e in more)


def test_ladder_design_is_an_isoflop_grid():
    spec = LadderSpec(budgets=(1e11, 1e12), sizes_per_budget=4)
    entries = design_ladder(spec)
    assert len(entries) == 8
    for b in spec.budgets:
        group = [e for e in entries if e.budget == b]
        assert len({e.config.model for e in group}) == 4
        assert all(e.config.horizon == "flops" and e.config.horizon_value == b for e in group)
    assert len({run_id_of(e.config) for e in entries}) == 8


def test_micro_ladder_trains_records_and_resumes(tmp_path, tiny_corpus):
    spec = LadderSpec(budgets=(2e9, 6e9), sizes_per_budget=3, corpus=tiny_corpus, seq_len=32, batch_size=4,
                      eval_tokens=1024, n_evals=3, n_bootstrap=50, families=("dense", "moe"))
    logs = []
    with RunStore(tmp_path / "s.db") as st:
        rep = run_ladder(spec, st, checkpoint_dir=tmp_path / "ck", out=tmp_path / "out", verify=False,
                         show_progress=False, figures=False, log=logs.append)
        assert rep["training"]["trained"] + rep["training"]["diverged"] == 12
        runs = st.runs(source="ladder")
        assert {r.family for r in runs} == {"dense", "moe"}
        moe = [r for r in runs if r.family == "moe"][0]
        assert moe.n_total > moe.n_active and moe.flops_6nd == pytest.approx(6 * moe.n_active * moe.tokens)
        assert st.curve(moe.run_id)
        again = run_ladder(spec, st, checkpoint_dir=tmp_path / "ck", out=tmp_path / "out", verify=False,
                           show_progress=False, figures=False, log=logs.append)
        assert again["training"]["trained"] == 0 and again["training"]["skipped"] == 12


KILL_SCRIPT = """
import sys
from scalinglab.train.config import ModelConfig, RunConfig
from scalinglab.train.run import train_run
cfg = RunConfig(model=ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=32), corpus=sys.argv[1], horizon="steps",
                horizon_value=int(sys.argv[3]), batch_size=4, n_evals=4, eval_tokens=1024)
r = train_run(cfg, checkpoint_dir=sys.argv[2], checkpoint_every_s=0.0)
print(r.final_loss, r.resumed_from_step)
"""


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_straight_runs_loss(tmp_path, tiny_corpus):
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ)
    steps = "400"
    straight = subprocess.run([sys.executable, str(script), tiny_corpus, str(tmp_path / "a"), steps], env=env,
                              capture_output=True, text=True, check=True).stdout.split()
    proc = subprocess.Popen([sys.executable, str(script), tiny_corpus, str(tmp_path / "b"), steps], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path / "b").rglob("step_*.pt")):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = subprocess.run([sys.executable, str(script), tiny_corpus, str(tmp_path / "b"), steps], env=env,
                             capture_output=True, text=True, check=True).stdout.split()
    assert int(resumed[1]) > 0, "the second start should resume from a checkpoint"
    assert float(resumed[0]) == float(straight[0])


@pytest.mark.slow
def test_cli_smoke_ladder_end_to_end(tmp_path):
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "scalinglab.cli", "ladder", "--preset", "smoke", "--json",
                          "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"),
                          "--checkpoints", str(tmp_path / "ck")], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rep = json.loads(out.stdout)
    fam = rep["families"]["dense"]
    v = fam["verification"]
    assert v["status"] == "finished" and v["actual_loss"] > 0 and len(v["interval"]) == 2
    sel, laws = v["selection"], {v["law"]: v["form"], **v["other_laws"], "curve law": v.get("curve_law")}
    assert v["form"]["law"] == v["law"] and set(sel["members"]) | set(sel["duplicates"]) <= set(laws)
    assert v["law"] in sel["members"] + list(sel["duplicates"]) and sum(sel["weights"].values()) == pytest.approx(1.0)
    assert math.log(v["predicted_loss"]) == pytest.approx(
        sum(w * math.log(laws[k]["predicted_loss"]) for k, w in sel["weights"].items()), rel=1e-9)
    assert v["interval"][0] < v["predicted_loss"] < v["interval"][1]
    # the replay of the stored ladder (benchmarks/replay_forecasts.py) refits it and states the same forecast
    folder = tmp_path / "replay"
    folder.mkdir()
    for suffix in ("", "-wal", "-shm"):
        if (tmp_path / f"s.db{suffix}").exists():
            shutil.copy(tmp_path / f"s.db{suffix}", folder / f"scalinglab.db{suffix}")
    (folder / "ladder.json").write_text(out.stdout)
    replay = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "replay_forecasts.py"),
                             str(folder), "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert replay.returncode == 0, replay.stderr[-3000:]
    row = json.loads(replay.stdout)["own"]["rows"][0]
    assert row["predicted_loss"] == pytest.approx(v["predicted_loss"], rel=1e-9)
    assert row["interval"] == pytest.approx(v["interval"], rel=1e-9) and row["weights"] == pytest.approx(sel["weights"])
    assert (tmp_path / "out" / "dense" / "isoflops.png").exists()
    assert rep["training"]["trained"] == 6
    assert v["epochs"] == pytest.approx(v["D"] / rep["data"]["train_tokens"]) and v["epochs"] < 1 and "warnings" not in v
    # efficiency: the compute trained is the grid's (trunk prefixes once, from the design) plus the verification run's
    eff = rep["efficiency"]
    assert eff["runs"] == 7 and eff["thread_budget"] == rep["machine"]["thread_budget"] >= 1
    assert eff["trained_flops"] == pytest.approx(rep["compute"]["trained_flops"] + 6 * v["N"] * v["D"], rel=1e-9)
    assert eff["fraction_of_peak"] == pytest.approx(eff["trained_flops"] / rep["seconds"] / rep["machine"]["fp32_matmul_peak_flops"])
    assert 0.0 < eff["outside_steps_share"] < 1.0 and eff["core_step_seconds"] >= eff["step_seconds"] > 0


def test_ladder_efficiency_counts_each_run_once_per_thread_it_trained_with():
    from scalinglab.experiments.ladder import ladder_efficiency
    from scalinglab.store import Run
    from scalinglab.train.executors import InlineExecutor, LocalExecutor, RayExecutor, thread_budget

    def run(steps, step_s, threads):
        return Run(run_id=f"r{steps}{threads}", name="r", source="ladder", n_active=1000.0, status="finished",
                   config={"batch_size": 4, "model": {"seq_len": 8}},
                   extra={"steps_trained": steps, "step_seconds": step_s, "eval_seconds": 1.0, "threads": threads})

    # two single-thread workers side by side for 100 s each, then a two-thread run for 10 s, in 130 s of wall time:
    # thread-time inside steps 100 + 100 + 2 * 10 = 220 of 2 * 130 = 260
    runs = [run(10, 100.0, 1), run(20, 100.0, 1), run(5, 10.0, 2)]
    e = ladder_efficiency(runs, 130.0, 1e9, 2)
    assert e["outside_steps_share"] == pytest.approx(40 / 260) and e["core_step_seconds"] == 220.0
    assert e["trained_flops"] == 6 * 1000 * 32 * 35 and e["fraction_of_peak"] == pytest.approx(6 * 1000 * 32 * 35 / 130 / 1e9)
    assert e["step_seconds"] == 210.0 and e["eval_seconds"] == 3.0 and e["eval_share"] == pytest.approx(4 / 260)
    # runs without threads recorded (older stores): the share of wall time if they ran one at a time, else unknown
    old = [dataclasses.replace(r, extra={k: v for k, v in r.extra.items() if k != "threads"}) for r in runs]
    one = ladder_efficiency(old[:1], 130.0, 1e9, None)
    assert one["outside_steps_share"] == pytest.approx(30 / 130) and one["eval_share"] == pytest.approx(1 / 130)
    assert ladder_efficiency(old, 130.0, 1e9, 2)["outside_steps_share"] is None
    assert ladder_efficiency(runs, 130.0, 1e9, None)["outside_steps_share"] is None     # trained elsewhere
    assert thread_budget(InlineExecutor(threads=3)) == 3 and thread_budget(LocalExecutor(workers=2, threads=1)) == 2
    assert thread_budget(LocalExecutor(workers=1)) == torch.get_num_threads() and thread_budget(RayExecutor()) is None


def test_every_executor_closes_twice_without_having_run():
    from scalinglab.train.executors import make_executor
    for name in ("inline", "local", "ray", "slurm"):     # constructing Ray's or Slurm's imports neither
        ex = make_executor(name)
        ex.close()
        ex.close()


def test_a_ladders_efficiency_counts_only_the_runs_its_own_driver_finished(tmp_path):
    import time as time_mod

    from scalinglab.experiments.ladder import trained_here
    from scalinglab.store import Run, RunStore
    from scalinglab.train.ladder import driver_id
    extra = {"step_seconds": 1.0, "steps_trained": 1}
    with RunStore(tmp_path / "s.db") as st:
        st.upsert_run(Run(run_id="before", name="a", source="ladder", status="finished", extra=dict(extra, driver=driver_id())))
        since = time_mod.time()
        time_mod.sleep(0.01)
        st.upsert_run(Run(run_id="mine", name="b", source="ladder", status="finished", extra=dict(extra, driver=driver_id())))
        st.upsert_run(Run(run_id="other", name="c", source="ladder", status="finished", extra=dict(extra, driver="elsewhere:1")))
        st.upsert_run(Run(run_id="failed", name="d", source="ladder", status="failed", extra=dict(extra, driver=driver_id())))
        assert [r.run_id for r in trained_here(st, since)] == ["mine"]


@pytest.mark.slow
def test_a_verification_run_that_repeats_the_corpus_says_so(tmp_path, tiny_corpus):
    from typer.testing import CliRunner

    from scalinglab import cli
    small = tmp_path / "small"
    small.mkdir()
    for p in sorted(Path(tiny_corpus).iterdir())[:6]:
        small.joinpath(p.name).write_bytes(p.read_bytes())
    args = ["ladder", "--preset", "smoke", "--executor", "inline", "--corpus", str(small), "--json", "--bootstrap", "20",
            "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--checkpoints", str(tmp_path / "ck")]
    res = CliRunner().invoke(cli.app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    v = rep["families"]["dense"]["verification"]
    assert v["epochs"] == pytest.approx(v["D"] / rep["data"]["train_tokens"]) and v["epochs"] > 1
    assert v["warnings"] and f"{v['epochs']:.2f} epochs" in v["warnings"][0]


def test_ctrl_c_inside_a_step_stops_after_it_and_resumes_exactly(tiny_corpus, tmp_path, monkeypatch):
    """SIGINT delivered after the optimizer has updated the weights but before the step is counted:
    the run must stop between steps, so the resumed run neither repeats nor skips that update."""
    from scalinglab.train import run as run_mod
    cfg = tiny_cfg(tiny_corpus, seed=11)
    straight = train_run(cfg)
    real, calls = run_mod.train_step, []

    def step_then_ctrl_c(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 10:
            os.kill(os.getpid(), signal.SIGINT)      # lands inside the step, before `step += 1`
        return out

    monkeypatch.setattr(run_mod, "train_step", step_then_ctrl_c)
    # a process started in the background inherits SIGINT ignored (and Python then leaves it so): give this
    # test Python's own handler, as an interactive terminal would
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train_run(cfg, checkpoint_dir=tmp_path / "ck", checkpoint_every_s=1e9)
        assert len(calls) == 10 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.setattr(run_mod, "train_step", real)
    resumed = train_run(cfg, checkpoint_dir=tmp_path / "ck")
    assert resumed.resumed_from_step == 10
    assert [p["loss"] for p in resumed.curve if p["split"] == "val"] == [p["loss"] for p in straight.curve if p["split"] == "val"]


def test_checkpoints_on_an_fsspec_url_resume_exactly(tiny_corpus):
    """A cluster's shared checkpoint store given as an fsspec URL (here the in-memory filesystem)."""
    cfg = tiny_cfg(tiny_corpus, seed=7)
    url = "memory://scalinglab-test/ck"
    straight = train_run(cfg)
    assert train_run(cfg, checkpoint_dir=url, stop_after_steps=9).status == "interrupted"
    resumed = train_run(cfg, checkpoint_dir=url)
    assert resumed.resumed_from_step == 9
    assert [p["loss"] for p in resumed.curve if p["split"] == "val"] == [p["loss"] for p in straight.curve if p["split"] == "val"]
    import fsspec
    fs = fsspec.filesystem("memory")
    folder = f"/scalinglab-test/ck/{run_id_of(cfg)}"
    newest = sorted(fs.glob(f"{folder}/step_*.pt"))[-1]
    fs.pipe(newest, b"truncated")
    state, problems = load_latest(f"memory://{folder}")
    assert state is not None and state["step"] < int(newest[-11:-3]) and "checksum mismatch" in problems[0]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")      # raised inside torch.compile's own machinery
def test_speed_options_bf16_and_compile_train_the_same_model(tiny_corpus):
    base = tiny_cfg(tiny_corpus, horizon_value=30)
    fp32 = train_run(base)
    bf16 = train_run(dataclasses.replace(base, dtype="bf16"))
    compiled = train_run(dataclasses.replace(base, compile=True))
    assert bf16.status == compiled.status == "finished"
    assert bf16.final_loss == pytest.approx(fp32.final_loss, rel=0.03)         # autocast: close, not identical
    assert compiled.final_loss == pytest.approx(fp32.final_loss, rel=1e-4)     # same math, fused


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_wsd_ladder_end_to_end(tmp_path, tiny_corpus):
    spec = LadderSpec(budgets=(2e9, 6e9, 1.8e10), sizes_per_budget=3, corpus=tiny_corpus, seq_len=32, batch_size=4,
                      eval_tokens=1024, n_bootstrap=50, schedule="wsd", device="cuda", dtype="bf16",
                      verify_multiplier=3.0)
    with RunStore(tmp_path / "s.db") as st:
        rep = run_ladder(spec, st, checkpoint_dir=tmp_path / "ck", out=tmp_path / "out", show_progress=False,
                         figures=False, log=lambda m: None)
        assert rep["training"]["failed"] == 0 and rep["training"]["trained"] == rep["n_runs"]
        assert all(r.config["device"] == "cuda" for r in st.runs(source="ladder"))


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "cuda"),
    (["--verify-multiplier", "0"], "--verify-multiplier"),
    (["--schedule", "linear"], "schedule"),
    (["--lr", "-1"], "lr must be"),
])
def test_ladder_refuses_bad_options_before_writing(tmp_path, args, message):
    from typer.testing import CliRunner

    from scalinglab.cli import app
    db = tmp_path / "s.db"
    r = CliRunner().invoke(app, ["ladder", "--store", str(db), *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not db.exists()


def test_a_ladder_whose_every_run_failed_exits_non_zero(tmp_path, tiny_corpus, monkeypatch):
    from typer.testing import CliRunner

    from scalinglab import cli
    from scalinglab.train import executors

    def broken(*a, **k):
        raise RuntimeError("no kernel for [bold]this[/] shape")

    monkeypatch.setattr(executors, "train_run", broken)
    args = ["ladder", "--preset", "smoke", "--executor", "inline", "--corpus", tiny_corpus, "--no-verify",
            "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--checkpoints", str(tmp_path / "ck")]
    res = CliRunner().invoke(cli.app, args)
    assert res.exit_code == 1, res.output
    assert "all 6 run(s) of the ladder failed" in res.output and "Traceback" not in res.output
    with RunStore(tmp_path / "s.db") as st:
        failed = st.runs(status="failed")
        assert len(failed) == 6 and "[bold]this[/]" in failed[0].extra["error"]


def test_kept_evaluation_checkpoints_are_scored_as_checkpoints_of_the_run(tmp_path, tiny_corpus):
    from scalinglab.forecast.evaluate import evaluate_runs
    from scalinglab.forecast.tasklaws import LadderPoints
    cfg = tiny_cfg(tiny_corpus, keep_eval_checkpoints=True)
    assert run_id_of(cfg) == run_id_of(dataclasses.replace(cfg, keep_eval_checkpoints=False))   # saves, trains the same
    res = train_run(cfg, checkpoint_dir=tmp_path)
    kept = sorted((tmp_path / res.run_id / "evals").glob("step_*.pt"))
    evals = sorted(set(eval_steps(24, 4)) | {23, 22, 21, 20})     # log-spaced, and 4 over the last 10% (gap 1)
    assert [int(p.stem.split("_")[1]) for p in kept] == [s for s in evals if s < 24]
    with RunStore(tmp_path / "s.db") as st:
        st.upsert_run(to_store_record(cfg, res, name="tiny", family="dense")[0])
        rows = evaluate_runs(st, tmp_path, ["addition:2"], n_problems=3, log=lambda *_: None)
    by_model = {r["model"]: r for r in rows if r["metric"] == "exact_match"}
    assert set(by_model) == {"tiny"} | {f"tiny@{s}" for s in evals if s < 24}
    for s in evals[:-1]:
        assert by_model[f"tiny@{s}"]["d"] == s * cfg.tokens_per_step and by_model[f"tiny@{s}"]["loss"] is None
    pts = LadderPoints.from_score_rows(rows, "exact_match")
    assert pts.final.sum() == 1 and (pts.run == "tiny").all() and pts.D[pts.final][0] == 24 * cfg.tokens_per_step


def test_verification_forecast_combines_the_laws_by_their_calibrated_errors():
    from scalinglab.experiments.ladder import combine_forecasts
    z = 1.959964
    band = lambda pred, sd: {"predicted_loss": pred, "interval": [pred * math.exp(-z * sd), pred * math.exp(z * sd)]}
    # one law: its own forecast and interval
    one = combine_forecasts({"kaplan-nd": band(1.3, 0.05)})
    assert one["forecast_by"] == "kaplan-nd" and one["predicted_loss"] == pytest.approx(1.3, rel=1e-12)
    assert one["interval"] == pytest.approx(band(1.3, 0.05)["interval"], rel=1e-9)
    # two laws: weights 1/sd^2, the point the weighted mean of the logs, the interval the mixture's quantiles
    members = {"kaplan-nd": band(1.0, 0.06), "curve law": band(1.05, 0.03)}
    out = combine_forecasts(members)
    w = {"kaplan-nd": 0.06 ** -2 / (0.06 ** -2 + 0.03 ** -2), "curve law": 0.03 ** -2 / (0.06 ** -2 + 0.03 ** -2)}
    assert out["weights"] == pytest.approx(w) and out["sd_log"] == pytest.approx({"kaplan-nd": 0.06, "curve law": 0.03})
    assert out["predicted_loss"] == pytest.approx(math.exp(w["curve law"] * math.log(1.05)), rel=1e-12)
    rng = np.random.default_rng(0)   # the mixture by sampling, independent of the quantile search
    pick = rng.random(2_000_000) < w["kaplan-nd"]
    draws = np.where(pick, rng.normal(0.0, 0.06, pick.size), rng.normal(math.log(1.05), 0.03, pick.size))
    assert np.log(out["interval"]) == pytest.approx(np.quantile(draws, [0.025, 0.975]), abs=1e-3)
    # the spread between the laws widens the interval beyond the precision-weighted sd alone
    assert math.log(out["interval"][1] / out["interval"][0]) > 2 * z * (w["kaplan-nd"] * 0.06 + w["curve law"] * 0.03)
    # the same forecast twice (a form whose extra term fitted to zero) enters once
    twice = combine_forecasts({**members, "interaction": dict(members["kaplan-nd"])})
    assert twice["duplicates"] == {"interaction": "kaplan-nd"} and twice["predicted_loss"] == out["predicted_loss"]
    assert twice["interval"] == out["interval"]
    wider = combine_forecasts({**members, "interaction": band(1.0004, 0.09)})   # same loss, wider interval
    assert wider["duplicates"] == {"interaction": "kaplan-nd"} and wider["predicted_loss"] == out["predicted_loss"]
    # laws fitted on the same data count as one source: combined first, with their mixture's sd
    three = {"chinchilla": band(1.0, 0.04), "kaplan-nd": band(0.94, 0.03), "curve law": band(1.02, 0.05)}
    grouped = combine_forecasts(three, {"chinchilla": "forms", "kaplan-nd": "forms"})
    v = np.array([0.04 ** -2, 0.03 ** -2]) / (0.04 ** -2 + 0.03 ** -2)
    m_f = v @ np.log([1.0, 0.94])
    s_f = math.sqrt(v @ (np.array([0.04, 0.03]) ** 2 + (np.log([1.0, 0.94]) - m_f) ** 2))
    W_f = s_f ** -2 / (s_f ** -2 + 0.05 ** -2)
    assert grouped["groups"]["forms"]["sd_log"] == pytest.approx(s_f, rel=1e-12)
    assert grouped["groups"]["forms"]["weight"] == pytest.approx(W_f, rel=1e-12)
    assert grouped["weights"] == pytest.approx({"chinchilla": W_f * v[0], "kaplan-nd": W_f * v[1], "curve law": 1 - W_f})
    assert grouped["predicted_loss"] == pytest.approx(math.exp(W_f * m_f + (1 - W_f) * math.log(1.02)), rel=1e-12)
    # laws of different groups that happen to agree are two sources (seed 51: the curve law within 0.02% of
    # Kaplan's form), while a form repeating another form of its group still enters once
    agree = {"kaplan-nd": band(1.0, 0.04), "chinchilla": band(0.97, 0.03), "curve law": band(1.0002, 0.05),
             "interaction": band(0.9701, 0.06)}
    by = {"kaplan-nd": "forms", "chinchilla": "forms", "interaction": "forms"}
    both = combine_forecasts(agree, by)
    assert both["duplicates"] == {"interaction": "chinchilla"} and "curve law" in both["members"]
    assert both["groups"]["curve law"]["weight"] > 0.2
    assert combine_forecasts(agree)["duplicates"] == {"curve law": "kaplan-nd", "interaction": "chinchilla"}
    # the disagreeing forms give the curve law more weight than one-stage weighting would
    flat = combine_forecasts(three)
    assert grouped["weights"]["curve law"] > flat["weights"]["curve law"]
    assert flat["groups"]["curve law"]["weight"] == pytest.approx(flat["weights"]["curve law"], rel=1e-12)
    # a member without a usable interval is left out; with none usable the first is kept
    nan = {"predicted_loss": 2.0, "interval": [float("nan"), float("nan")]}
    assert combine_forecasts({"kaplan-nd": band(1.3, 0.05), "curve law": nan})["members"] == ["kaplan-nd"]
    assert combine_forecasts({"a": nan, "b": dict(nan, predicted_loss=3.0)})["predicted_loss"] == 2.0


def test_curve_points_can_leave_out_the_start_of_every_curve(tmp_path, tiny_corpus):
    from scalinglab.experiments.ladder import curve_points
    cfg = tiny_cfg(tiny_corpus, horizon_value=64, n_evals=8, warmup_steps=2)
    res = train_run(cfg, checkpoint_dir=tmp_path)
    with RunStore(tmp_path / "s.db") as st:
        run, curve = to_store_record(cfg, res, name="tiny", family="dense")
        st.add_runs([run], {run.run_id: curve})
        runs = st.runs()
        every = curve_points(st, runs)
        late = curve_points(st, runs, skip=0.25)
    steps = [p["step"] for p in curve if p.get("split", "val") == "val" and p.get("loss") is not None]
    assert max(steps) == 64
    assert every["L"].size == sum(s >= 8 for s in steps) and late["L"].size == sum(s >= 16 for s in steps) >= 3
    assert np.array_equal(late["L"], every["L"][every["L"].size - late["L"].size:]) and late["final"][-1]
