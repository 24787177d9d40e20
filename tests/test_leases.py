"""Several drivers on one store: leases split the work, no run is trained twice, stale ones are taken over."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from scalinglab.store import RunStore
from scalinglab.train.checkpoint import load_latest, remove_stale_temps, save_checkpoint
from scalinglab.train.ladder import LadderSpec, design_ladder, lease_key

from test_train import tiny_corpus  # noqa: F401 - the shared corpus fixture


def test_a_lease_has_one_holder_until_it_is_released_or_stale(tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        assert st.claim("run-1", "a") and st.claim("run-1", "a")        # re-entrant for its holder
        assert not st.claim("run-1", "b")
        assert st.lease("run-1")["owner"] == "a"
        time.sleep(0.01)
        assert st.claim("run-1", "b", stale_after=0.001)                # a stopped renewing: taken over
        st.renew_leases("b")
        assert not st.claim("run-1", "a")
        st.release_leases("b")
        assert st.lease("run-1") is None and st.claim("run-1", "a")


def test_racing_claims_give_every_key_to_exactly_one_driver(tmp_path):
    path = tmp_path / "s.db"
    RunStore(path).close()
    won: dict[str, list[int]] = {}
    keys = [f"k{i}" for i in range(150)]

    def driver(name):
        with RunStore(path) as st:
            won[name] = [i for i, k in enumerate(keys) if st.claim(k, name)]

    threads = [threading.Thread(target=driver, args=(f"d{j}",)) for j in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = sorted(i for v in won.values() for i in v)
    assert claimed == list(range(len(keys)))


def test_stale_temporary_checkpoint_files_are_removed_on_resume(tmp_path):
    folder = tmp_path / "ck"
    save_checkpoint(folder, 3, {"step": 3})
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    names = {"dead": f"step_00000004.pt.tmp-{host}-{dead}-0a1b2c3d", "live": f"step_00000004.pt.tmp-{host}-{os.getpid()}-0a1b2c3d",
             "other_host": "step_00000004.pt.tmp-elsewhere-1-0a1b2c3d", "legacy": "step_00000004.pt.tmp"}
    for n in names.values():
        (folder / n).write_bytes(b"partial")
    state, problems = load_latest(folder)
    assert state["step"] == 3 and not problems
    left = {p.name for p in folder.iterdir()}
    assert names["live"] in left and names["other_host"] in left
    assert names["dead"] not in left and names["legacy"] not in left
    assert remove_stale_temps(folder) == []


DRIVER = """
import json, sys, time
from scalinglab.store import RunStore
from scalinglab.train.executors import InlineExecutor
from scalinglab.train.ladder import LadderSpec, design_ladder, train_entries
spec = LadderSpec(budgets=(2e9, 6e9), sizes_per_budget=3, corpus=sys.argv[1], seq_len=32, batch_size=4, eval_tokens=1024,
                  n_evals=3, schedule="wsd")
entries = design_ladder(spec)
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))     # both drivers start together
logs = []
with RunStore(sys.argv[2]) as st:
    out = train_entries(entries, st, InlineExecutor(threads=1), sys.argv[4], show_progress=False, log=logs.append,
                        poll_s=0.2)
print(json.dumps({"outcome": out, "done": [l.split()[1].rstrip(":") for l in logs if l.startswith("done ")],
                  "logs": [l for l in logs if not l.startswith("done ")]}))
"""


@pytest.mark.slow
def test_two_ladder_drivers_on_one_store_train_every_run_exactly_once(tmp_path, tiny_corpus):  # noqa: F811
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store = tmp_path / "s.db"
    RunStore(store).close()
    start = time.time() + 8.0
    procs = [subprocess.Popen([sys.executable, str(script), tiny_corpus, str(store), str(start), str(tmp_path / "ck")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(2)]
    outs = []
    for p in procs:
        so, se = p.communicate(timeout=600)
        assert p.returncode == 0, se[-3000:]
        outs.append(json.loads(so.strip().splitlines()[-1]))
    spec = LadderSpec(budgets=(2e9, 6e9), sizes_per_budget=3, corpus=tiny_corpus, seq_len=32, batch_size=4,
                      eval_tokens=1024, n_evals=3, schedule="wsd")
    entries = design_ladder(spec)
    names = sorted(e.name for e in entries)
    a, b = (set(o["done"]) for o in outs)
    assert not a & b, f"trained twice: {a & b}"
    assert sorted(a | b) == names
    assert a and b, "both drivers should have taken part of the work"
    # a WSD trunk is one unit of work: its branches all went to the same driver
    trunks: dict[str, set] = {}
    for e in entries:
        trunks.setdefault(lease_key(e.config), set()).add("a" if e.name in a else "b")
    assert all(len(v) == 1 for v in trunks.values()), (trunks, outs)
    for o in outs:
        assert o["outcome"]["trained"] + o["outcome"]["by_other_drivers"] == len(entries)
    with RunStore(store) as st:
        assert {r.status for r in st.runs()} == {"finished"}
        assert st.lease(lease_key(entries[0].config)) is None          # released at the end


def test_writers_of_one_token_cache_never_share_a_temporary_file(tmp_path, monkeypatch):
    """Two drivers tokenizing one corpus at once: one finishing its whole write between the other's
    write and rename must leave both successful and the file whole (a shared temporary name failed
    the second rename, and with it a run)."""
    from scalinglab.train import data as data_mod
    path = tmp_path / "train.bin"

    def outer(tmp):
        tmp.write_bytes(b"a" * 1000)
        data_mod._replace_with(path, lambda t: t.write_bytes(b"a" * 1000))   # the other writer, start to end

    data_mod._replace_with(path, outer)
    assert path.read_bytes() == b"a" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["train.bin"]      # no temporary left behind
    # and end to end: eight threads tokenize a fresh corpus at once
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"f{i}.py").write_text(f"x = {i}\n" * 200)
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "cache"))
    barrier, got, errors = threading.Barrier(8), [], []

    def tokenize():
        barrier.wait()
        try:
            got.append(data_mod.load_tokens(str(corpus)).train.size)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(e))

    threads = [threading.Thread(target=tokenize) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(got)) == 1 and got[0] > 0
