"""The README and the workflow pages in docs/ are run as written, so they cannot drift from the code.

Every ``bash`` block of the README runs in a fresh temporary folder (ladders and fits on their smoke
settings, see :func:`smoke`), and every docs page's session block runs verbatim. A run fails on a
traceback, an exit code the text does not announce, or output that contradicts the text.
"""
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import isoflop_runs
from scalinglab.cli import lab as cli_lab

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
WORKFLOW_PAGES = ("runs-you-have.md", "ladders.md", "test-time.md", "capabilities-and-gates.md", "economics.md")
SLOW_PAGES = {"ladders.md", "runs-you-have.md", "capabilities-and-gates.md", "economics.md"}   # > a few seconds


def bash_blocks(path: Path, language: str = "bash") -> list[tuple[str, str]]:
    """(the heading above it, text) of every ```bash (or other ``language``) block of a markdown file."""
    out, heading, block = [], "", None
    for line in path.read_text().splitlines():
        if block is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif block is None and line.strip() == "```" + language:
            block = []
        elif block is not None and line.strip() == "```":
            out.append((heading, "\n".join(block)))
            block = None
        elif block is not None:
            block.append(line)
    return out


def commands(block: str) -> list[list[str]]:
    """The commands of a block, as argument lists (comments dropped; one command per line)."""
    return [args for args in (shlex.split(line, comments=True) for line in block.splitlines()) if args]


def flat(text: str) -> str:
    return " ".join(text.split())


def _env() -> dict:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", COLUMNS="160",
                PYTHONWARNINGS="ignore")


def run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def check(proc, args, expect_codes=(0,), expect=()) -> str:
    out = proc.stdout + proc.stderr
    shown = f"$ {shlex.join(args)}\n{out[-4000:]}"
    assert "Traceback (most recent call last)" not in out, shown
    assert proc.returncode in expect_codes, shown
    for needle in expect:
        assert flat(needle) in flat(out), f"{needle!r} not in the output of\n{shown}"
    return out


# --------------------------------------------------------------------------------------------- README
def smoke(args: list[str]) -> list[str]:
    """A README command on its smoke settings: ladders on the smoke preset (a README ladder that names its own
    budgets keeps the preset and drops the budgets), fewer bootstrap resamples, problems and samples."""
    args = list(args)
    if args[:2] in (["scalinglab", "ladder"], ["scalinglab", "lr-check"]):
        if "--preset" not in args:
            args += ["--preset", "smoke"]
        elif "--budgets" in args:
            i = args.index("--budgets")
            del args[i:i + 2]
    if args[:2] == ["scalinglab", "fit"]:
        args += ["--bootstrap", "50", "--no-figures"]
    if args[:2] == ["scalinglab", "backtest"]:
        args += ["--bootstrap", "20", "--max-cuts", "1", "--no-figures"]
    if args[:2] == ["scalinglab", "sample"]:
        args[args.index("--problems") + 1] = "6"
    if args[:2] == ["scalinglab", "evaluate"]:
        args += ["--problems", "20"]
    if args[:2] == ["scalinglab", "forecast"] or args[:2] == ["scalinglab", "gate"]:
        args += ["--bootstrap", "100"]
    if args[:2] == ["scalinglab", "passk"] and "--task" not in args:
        args += ["--bootstrap", "200"]
    if args[:2] == ["scalinglab", "distill"]:
        args[args.index("--compute") + 1] = "1.5e10"
    return args


# what the README's own words promise about a command's output (and exit codes it announces); a key
# (heading, command) holds for that section only
EXPECT = {
    "scalinglab import runs.csv --n-col params --d-col tokens --loss-col val_loss": ["imported 45 of 45 runs"],
    ("With runs you already have", "scalinglab runs"): ["45 runs in scalinglab.db"],
    "scalinglab runs": ["runs in scalinglab.db"],
    "scalinglab fit --holdout largest": ["hold-out (largest)", "(36 fitted, 9 held out)"],
    "scalinglab fit --law auto --holdout 'C > 1e21'": ["forms ranked by rolling-origin backtest error", "(recommended)"],
    "scalinglab predict --law 1 --params 7B --tokens 140B": ["predicted loss", "prediction interval"],
    "scalinglab plan --preset chinchilla-2022 --compute 5.76e23": ["N_opt = 40.4B"],
    "scalinglab plan --preset epoch-2024 --compute 1e23 --unique-tokens 2T": ["data-constrained"],
    "scalinglab export runs.parquet": ["wrote 45 runs to runs.parquet"],
    "scalinglab ladder --preset smoke": ["verification"],
    "scalinglab compare --preset smoke --budgets 5e9,1.5e10 --threads 1 --baseline dense --candidate moe": ["verdict:", "moe vs dense"],
    "scalinglab passk samples.jsonl --k 1,10,100 --target 0.9": ["samples for coverage 0.9"],
    "scalinglab cost serve --params 7B --hardware cpu": ["this CPU (measured)", "tokens/s"],
    "scalinglab report --out report.html --static figures/": ["wrote report.html"],
}
EXIT_CODES = {"gate": (0, 10, 20)}      # "exit 0 pass, 10 review, 20 hold"


def _write_runs_csv(folder: Path) -> None:
    N, D, L = isoflop_runs(budgets=np.logspace(18, 21.5, 5), sizes=9)
    (folder / "runs.csv").write_text("name,params,tokens,val_loss\n" + "\n".join(
        f"run-{i},{n:.6e},{d:.6e},{loss:.6f}" for i, (n, d, loss) in enumerate(zip(N, D, L))) + "\n")


def _write_samples(folder: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for prob in range(12):
        p = rng.uniform(0.02, 0.5)
        for s in range(400):                                 # more than the README's --backtest 100 keeps
            ok = bool(rng.random() < p)
            rows.append({"problem": f"q{prob}", "sample_id": s, "answer": "42" if ok else str(rng.integers(0, 4)),
                         "correct": ok, "score": float(rng.random() + 0.5 * ok), "model": "m", "task": "toy"})
    (folder / "samples.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _write_published(folder: Path) -> None:
    """A model suite whose addition exact match rises along a sigmoid in task loss (task loss a power law in C)."""
    lines = ["model,C,task,metric,value"]
    for i, n in enumerate(np.geomspace(2e4, 2e6, 8)):
        c = 360 * n * n                                       # 60 tokens per parameter
        task_loss = 0.05 + 300 * c ** -0.2
        em = 1 / (1 + np.exp(8 * (task_loss - 0.6)))
        lines += [f"suite-{i},{c:.4g},addition:2,task_loss,{task_loss:.5f}",
                  f"suite-{i},{c:.4g},addition:2,exact_match,{em:.5f}"]
    (folder / "published.csv").write_text("\n".join(lines) + "\n")




def _write_tracker_logs(folder: Path) -> None:
    import mlflow
    from torch.utils.tensorboard import SummaryWriter
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    for n in (1e6, 4e6):
        with mlflow.start_run(run_name=f"m{n:.0e}"):
            mlflow.log_params({"n_params": n, "tokens": 20 * n})
            for step in range(1, 6):
                mlflow.log_metric("val_loss", 4.0 - 0.1 * step - np.log10(n) / 10, step=step)
        w = SummaryWriter(str(folder / "runs" / f"tb{n:.0e}"))
        w.add_scalar("meta/n_params", n, 0)
        w.add_scalar("meta/tokens", 20 * n, 0)
        for step in range(1, 6):
            w.add_scalar("loss/val", 4.0 - 0.1 * step - np.log10(n) / 10, step)
        w.close()


def _prepare(heading: str, folder: Path) -> None:
    if heading == "With runs you already have":
        _write_runs_csv(folder)
    elif heading == "From the trackers you already use":
        _write_tracker_logs(folder)
    elif heading == "With runs it trains itself":
        texts = folder / "my_texts"
        texts.mkdir()
        for f in sorted(Path(json.__file__).parent.glob("*.py")) + sorted(Path(re.__file__).parent.glob("*.py"))[:40]:
            (texts / f.name).write_bytes(f.read_bytes())
    elif heading == "Test-time compute":
        _write_samples(folder)
    elif heading == "Capabilities, forecasts and release gates":
        _write_published(folder)
        policy = [b for h, b in bash_blocks(README, "toml") if h == heading]     # the README's own example
        (folder / "policy.toml").write_text(policy[0] + "\n")


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def _special(args: list[str], folder: Path, heading: str = ""):
    """How a README command that cannot run as written here is handled: (args, exit codes, expected text) or None
    to leave it out, with the reason in the code."""
    line = shlex.join(args)
    if args[0] == "python3":                   # the install itself: this environment is what it builds
        return None
    if args[:2] == ["scalinglab", "import-tracker"] and args[2] == "wandb":
        import importlib.util
        if importlib.util.find_spec("wandb") is not None:
            return None                        # needs the network and a W&B account
        return args, (2,), ["pip install 'scalinglab[wandb]'"]
    if "--device" in args and args[args.index("--device") + 1].startswith("cuda"):
        if _cuda():
            return None                        # a GPU ladder at these budgets takes more than a smoke test
        return args, (2,), ["has no usable CUDA device"]
    if args[:2] == ["scalinglab", "serve"]:
        return None                            # runs until stopped; test_serve_starts below covers it
    if args[:2] == ["scalinglab", "distill"]:
        from scalinglab.store import RunStore
        with RunStore(folder / "scalinglab.db", readonly=True) as st:
            dense = [r for r in st.runs(status="finished", family="dense") if r.extra.get("role") == "grid"]
        teacher = max(dense, key=lambda r: r.n_active).run_id
        args = [teacher if a == "RUN_ID" else a for a in args]
    return smoke(args), EXIT_CODES.get(args[1], (0,)), EXPECT.get((heading, line), EXPECT.get(line, []))


README_BLOCKS = [(h, b) for h, b in bash_blocks(README) if h != "scalinglab"]   # the install block is the setup


def test_readme_blocks_are_known_and_expectations_current():
    headings = [h for h, _ in README_BLOCKS]
    assert len(headings) == len(set(headings)), headings
    text = "\n".join(shlex.join(a) for _, b in bash_blocks(README) for a in commands(b))
    stale = [k for k in EXPECT if (k[1] if isinstance(k, tuple) else k) not in text]
    assert not stale, f"expectations for commands the README no longer has: {stale}"


@pytest.mark.parametrize("heading, block", [
    pytest.param(h, b, marks=pytest.mark.slow, id=re.sub(r"\W+", "-", h).strip("-").lower())
    for h, b in README_BLOCKS])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")      # raised inside the trackers' own dependencies (mlflow)
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_readme_block_runs_as_written(heading, block, tmp_path):
    _prepare(heading, tmp_path)
    for args in commands(block):
        assert args[0] in ("scalinglab", "python3"), f"a README command that is not scalinglab's: {args}"
        how = _special(args, tmp_path, heading)
        if how is None:
            continue
        run_args, codes, expect = how
        check(run(run_args, tmp_path), run_args, codes, expect)


@pytest.mark.slow
def test_serve_starts(tmp_path):
    _write_runs_csv(tmp_path)
    check(run(["scalinglab", "import", "runs.csv"], tmp_path), ["import"])
    proc = subprocess.Popen(["scalinglab", "serve", "--port", "8799"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        import time
        import urllib.request
        for _ in range(300):                         # a loaded machine starts it slowly
            try:
                with urllib.request.urlopen("http://127.0.0.1:8799/api/runs", timeout=1) as resp:
                    assert len(json.load(resp)["runs"]) == 45
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the dashboard did not answer")
    finally:
        proc.terminate()
        proc.communicate(timeout=20)                 # reads and closes the pipe


# --------------------------------------------------------------------------------------------- docs pages
def _session(page: Path) -> str:
    blocks = [b for h, b in bash_blocks(page) if h.lower().startswith("session")]
    assert len(blocks) == 1, f"{page.name} needs exactly one ```bash block under a 'Session' heading"
    return blocks[0]


def test_every_workflow_has_a_page_with_a_session():
    for name in WORKFLOW_PAGES:
        assert (DOCS / name).is_file(), name
        _session(DOCS / name)
        assert f"docs/{name}" in README.read_text(), f"the README does not link docs/{name}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n in SLOW_PAGES else ())
                                  for n in WORKFLOW_PAGES])
def test_docs_session_runs_as_written(name, tmp_path):
    """The session runs verbatim in bash (set -e); each ``#> text`` line is output the page promises."""
    block = _session(DOCS / name)
    promised = [line.strip()[2:].strip() for line in block.splitlines() if line.strip().startswith("#>")]
    proc = run(["bash", "-euo", "pipefail", "-c", block], tmp_path)
    check(proc, ["bash", DOCS.name + "/" + name], (0,), promised)


# --------------------------------------------------------------------------------------------- numbers
def _minutes(text: str) -> float:
    m = re.fullmatch(r"(\d+) min (\d+) s", text.strip())
    return int(m[1]) + int(m[2]) / 60


def test_preset_times_agree_with_the_experiment_log_and_readme():
    """The quick preset's time in help texts and README is the median measured wall time in the experiment log."""
    log = (DOCS / "experiments.md").read_text()
    section = log.split("the main job at 10×")[-1]      # the latest measurement
    rows = re.findall(r"\| \d+ \| (\d+ min \d+ s) \|", section)
    assert len(rows) >= 3, rows
    median = statistics.median(_minutes(r) for r in rows)
    assert cli_lab.PRESET_WALL_TIMES["quick"] == f"~{round(median)} minutes on 2 CPU cores"
    readme = flat(README.read_text())
    for page in (readme, flat((DOCS / "ladders.md").read_text())):
        for preset, words in cli_lab.PRESET_WALL_TIMES.items():
            assert words in page, (preset, words)
    minutes = re.search(r"~(\d+) min", cli_lab.PRESET_WALL_TIMES["quick"])[1]
    assert not re.search(rf"quick[^.\n]{{0,40}}~(?!{minutes} )\d+ min", readme), "another quick-preset time in the README"
