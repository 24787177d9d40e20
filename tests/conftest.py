import numpy as np
import pytest

from scalinglab.laws import ChinchillaLaw
from scalinglab.laws.presets import CHINCHILLA_2022


def isoflop_runs(true=CHINCHILLA_2022, budgets=np.logspace(17, 20, 5), sizes=9, noise=0.005, seed=0):
    """Synthetic IsoFLOP grid drawn from a known Chinchilla law with log-normal noise."""
    rng = np.random.default_rng(seed)
    N, D = [], []
    for c in budgets:
        n_opt = ChinchillaLaw._frontier(true, c)[0]
        n = n_opt * np.logspace(-1.2, 1.2, sizes)
        N.append(n)
        D.append(c / (6 * n))
    N, D = np.concatenate(N), np.concatenate(D)
    L = ChinchillaLaw._predict_from(true, N, D) * np.exp(rng.normal(0, noise, N.size))
    return N, D, L


@pytest.fixture
def runs_csv(tmp_path):
    N, D, L = isoflop_runs()
    path = tmp_path / "runs.csv"
    lines = ["name,params,tokens,loss"] + [f"r{i},{n/1e6:.6f}M,{d:.6e},{l:.6f}" for i, (n, d, l) in enumerate(zip(N, D, L))]
    path.write_text("\n".join(lines) + "\n")
    return path
