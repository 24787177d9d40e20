"""Task scaling laws from a model ladder: (N, D) -> task loss -> accuracy, per task, with chained intervals.

The method of Bhagia et al. 2024, "Establishing Task Scaling Laws via Compute-Efficient Model Ladders"
(https://arxiv.org/abs/2412.04403):

* **step 1** -- task loss (bits per byte of the correct answer) ``L(N, D) = E + A/N^alpha + B/D^beta``,
  fitted per task on the *final* checkpoint of each ladder run (an intermediate checkpoint is not a
  model trained to completion on its token count: its learning rate has not decayed);
* **step 2** -- accuracy ``floor + (ceiling - floor) / (1 + exp(k (L - L0)))``, the floor fixed at the
  task's chance level and the ceiling fitted, on *all* checkpoints (any checkpoint is a point on the
  loss-to-accuracy curve);
* **chained intervals** -- a pairs bootstrap over runs (a run moves with all its checkpoints) refits
  both steps on the same resample; the prediction interval adds step-2 observation noise.

Beyond it, two variants and a choice among them by rolling-origin backtest on the ladder itself:

* ``single_step`` -- accuracy ``floor + (ceiling - floor) * sigmoid(E - A/N^alpha - B/D^beta)`` fitted end
  to end on the final checkpoints (started from the chained fit);
* ``stacked`` -- the mean of the two-step and single-step forecasts (equal weights: a weight fitted on
  the same backtest would make the choice optimistic).

Predictability (after the OLMo ladder's variance analysis): the checkpoint-to-checkpoint noise of
score and task loss over each run's last checkpoints, reported with every forecast; a task whose
score noise exceeds ``max_noise_fraction`` of the score spread across the ladder is flagged as too noisy
and its forecast withheld.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import optimize

from ..laws import ChinchillaLaw, FitError, percentile_interval
from ..laws import _engine

VARIANTS = ("two_step", "single_step", "stacked")

# Chance accuracy of common multiple-choice tasks (1 / number of choices); tasks not listed default to 0
# (generation tasks scored by exact match) unless a chance level is given.
CHANCE = {"arc_easy": 0.25, "arc_challenge": 0.25, "hellaswag": 0.25, "openbookqa": 0.25, "mmlu": 0.25,
          "csqa": 0.2, "commonsense_qa": 0.2, "piqa": 0.5, "winogrande": 0.5, "boolq": 0.5,
          "socialiqa": 1 / 3, "social_iqa": 1 / 3, "siqa": 1 / 3, "copa": 0.5, "sciq": 0.25}


def chance_level(task: str) -> float:
    """The chance accuracy of ``task`` by its name (``CHANCE``; ``arc_easy:mc`` reads as ``arc_easy``), else 0."""
    base = task.lower().replace("-", "_").split(":")[0].split("/")[0]
    return float(CHANCE.get(base, 0.0))


def accuracy_of_loss(L, floor: float, ceiling, k, L0):
    """Step 2: ``floor + (ceiling - floor) / (1 + exp(k (L - L0)))``; falls from ceiling to floor as loss grows."""
    z = np.clip(np.multiply(k, np.subtract(L, L0)), -60, 60)
    return floor + (np.subtract(ceiling, floor)) / (1.0 + np.exp(z))


def accuracy_of_size(N, D, floor: float, p: dict):
    """Single step: ``floor + (ceiling - floor) * sigmoid(E - A/N^alpha - B/D^beta)``."""
    z = p["E"] - p["A"] * np.power(N, -p["alpha"]) - p["B"] * np.power(D, -p["beta"])
    return floor + (p["ceiling"] - floor) / (1.0 + np.exp(-np.clip(z, -60, 60)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class LadderPoints:
    """One task's measurements across a ladder: a row per checkpoint of each run.

    ``run`` names the run; ``N`` its parameters, ``D`` the tokens seen at the checkpoint; ``final`` marks
    each run's final checkpoint (step 1 uses only those).
    """

    run: np.ndarray
    N: np.ndarray
    D: np.ndarray
    task_loss: np.ndarray
    score: np.ndarray
    final: np.ndarray

    @classmethod
    def from_arrays(cls, *, run, N, D, task_loss, score, final) -> "LadderPoints":
        pts = cls(run=np.asarray(run, str), N=np.asarray(N, float), D=np.asarray(D, float),
                  task_loss=np.asarray(task_loss, float), score=np.asarray(score, float), final=np.asarray(final, bool))
        sizes = {a.size for a in (pts.run, pts.N, pts.D, pts.task_loss, pts.score, pts.final)}
        if len(sizes) != 1:
            raise ValueError("run, N, D, task_loss, score and final must have the same length")
        for name in ("N", "D", "task_loss"):
            a = getattr(pts, name)
            if not (np.isfinite(a) & (a > 0)).all():
                raise ValueError(f"{name} must be finite and positive")
        if not np.isfinite(pts.score).all():
            raise ValueError("score must be finite")
        finals = pts.run[pts.final]
        if np.unique(finals).size != finals.size:
            raise ValueError("a run has more than one final checkpoint")
        return pts

    @classmethod
    def from_score_rows(cls, rows: list[dict], metric: str) -> "LadderPoints":
        """From rows of the store's scores table for one task. A checkpoint is stored as model
        ``RUN@CHECKPOINT``; the model named ``RUN`` itself is the run's final checkpoint."""
        by_model: dict = {}
        for r in rows:
            by_model.setdefault(r["model"], {"n": r["n"], "d": r["d"]})[r["metric"]] = r["value"]
        keep = [(m, v) for m, v in by_model.items() if metric in v and "task_loss" in v and v["n"] and v["d"]]
        if not keep:
            raise FitError(f"no models with N, D, task_loss and {metric}")
        return cls.from_arrays(run=[m.rsplit("@", 1)[0] for m, _ in keep], N=[v["n"] for _, v in keep],
                               D=[v["d"] for _, v in keep], task_loss=[v["task_loss"] for _, v in keep],
                               score=[v[metric] for _, v in keep], final=["@" not in m for m, _ in keep])

    def subset(self, runs) -> "LadderPoints":
        keep = np.isin(self.run, list(runs))
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)})

    @property
    def runs(self) -> np.ndarray:
        """Run names in the order of their final checkpoints' compute ``6 N D``."""
        idx = np.flatnonzero(self.final)
        return self.run[idx[np.argsort(6 * self.N[idx] * self.D[idx], kind="stable")]]


def predictability(points: LadderPoints, *, last: int = 5, max_noise_fraction: float = 0.1) -> dict:
    """Checkpoint-to-checkpoint noise of score and task loss over each run's last ``last`` checkpoints.

    Noise is the von Neumann estimate ``sqrt(mean(diff^2) / 2)`` of successive checkpoints (ordered by
    tokens), which a slow trend barely moves; the task's value is the median over runs with at least 3
    checkpoints. ``too_noisy`` is set when the score noise exceeds ``max_noise_fraction`` of the spread of
    final scores across the ladder (the signal the fit has to follow).
    """
    score_noise, loss_noise = [], []
    for r in np.unique(points.run):
        idx = np.flatnonzero(points.run == r)
        idx = idx[np.argsort(points.D[idx], kind="stable")][-last:]
        if idx.size < 3:
            continue
        score_noise.append(float(np.sqrt(np.mean(np.diff(points.score[idx]) ** 2) / 2)))
        loss_noise.append(float(np.sqrt(np.mean(np.diff(points.task_loss[idx]) ** 2) / 2) / np.mean(points.task_loss[idx])))
    fs = points.score[points.final]
    spread = float(fs.max() - fs.min()) if fs.size else 0.0
    out = {"last_checkpoints": last, "runs_measured": len(score_noise), "score_spread": spread,
           "max_noise_fraction": max_noise_fraction}
    if not score_noise:
        out.update(score_noise=None, task_loss_rel_noise=None, too_noisy=None,
                   note="no run has 3 or more checkpoints: checkpoint noise not measured")
        return out
    sn = float(np.median(score_noise))
    out.update(score_noise=sn, task_loss_rel_noise=float(np.median(loss_noise)),
               noise_fraction=sn / spread if spread > 0 else float("inf"))
    out["too_noisy"] = bool(out["noise_fraction"] > max_noise_fraction)
    return out


class TaskLadderForecast:
    """Two-step (and single-step, stacked) forecast of one task's score from a model ladder.

    Args:
        chance: the score's floor (the task's chance level).
        n_bootstrap: joint bootstrap resamples over runs (0: point forecasts only).
        level: interval level.
        variant: ``"auto"`` (chosen by rolling-origin backtest on the ladder), or one of ``VARIANTS``.
        n_origins: backtest origins (each forecasts the next-larger-compute run from all smaller ones).
        last_checkpoints, max_noise_fraction: see :func:`predictability`.

    Learned: ``step1_`` (:class:`ChinchillaLaw` on final checkpoints), ``step2_`` (ceiling, k, L0),
    ``single_`` (ceiling, E, A, B, alpha, beta), bootstrap parameter arrays ``boot1_``, ``boot2_``,
    ``boot_single_``, ``backtest_``, ``variant_``, ``predictability_``, ``data_range_``.
    """

    def __init__(self, *, chance: float = 0.0, n_bootstrap: int = 400, level: float = 0.95, seed: int = 0,
                 variant: str = "auto", n_origins: int = 3, last_checkpoints: int = 5, max_noise_fraction: float = 0.1):
        self.chance = chance
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed
        self.variant = variant
        self.n_origins = n_origins
        self.last_checkpoints = last_checkpoints
        self.max_noise_fraction = max_noise_fraction

    def __repr__(self) -> str:
        return (f"TaskLadderForecast(chance={self.chance}, n_bootstrap={self.n_bootstrap}, level={self.level}, "
                f"variant={self.variant!r})")

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, points: LadderPoints) -> "TaskLadderForecast":
        if self.variant != "auto" and self.variant not in VARIANTS:
            raise ValueError(f"variant must be 'auto' or one of {', '.join(VARIANTS)}, not {self.variant!r}")
        if not 0 <= self.chance < 1:
            raise ValueError(f"chance must be in [0, 1), not {self.chance}")
        self._fit_point(points)
        fin = points.final
        C = 6 * points.N[fin] * points.D[fin]
        self.data_range_ = {"runs": int(fin.sum()), "checkpoints": int(points.run.size), "N_min": float(points.N[fin].min()),
                            "N_max": float(points.N[fin].max()), "D_max": float(points.D[fin].max()),
                            "C_min": float(C.min()), "C_max": float(C.max()),
                            "task_loss_min": float(points.task_loss.min()), "task_loss_max": float(points.task_loss.max())}
        self.predictability_ = predictability(points, last=self.last_checkpoints, max_noise_fraction=self.max_noise_fraction)
        self.backtest_ = rolling_origin(points, chance=self.chance, n_origins=self.n_origins, grid=self._warm_grid())
        if self.variant != "auto":
            self.variant_ = self.variant
        elif self.backtest_["origins"]:
            mae = self.backtest_["mean_abs_error"]
            self.variant_ = min(VARIANTS, key=lambda v: (mae[v], VARIANTS.index(v)))
        else:
            self.variant_ = "two_step"
        self.boot1_ = self.boot2_ = self.boot_single_ = None
        if self.n_bootstrap:
            self._bootstrap(points)
        return self

    def _warm_grid(self) -> np.ndarray:
        """Starts for refits on parts of the ladder: the full fit's minima and a coarse grid."""
        coarse = np.array(np.meshgrid(np.arange(0, 21, 10.0), np.arange(0, 21, 10.0), [0.25, 0.75], [0.25, 0.75],
                                      [-1.0, 0.0])).reshape(5, -1).T
        return np.vstack([self.step1_.minima_, coarse])

    def _fit_point(self, points: LadderPoints, grid: np.ndarray | None = None) -> None:
        fin = points.final
        if fin.sum() < 6:
            raise FitError(f"step 1 (5 parameters) needs the final checkpoints of at least 6 runs; got {int(fin.sum())}")
        self.step1_ = _fit_step1(points.N[fin], points.D[fin], points.task_loss[fin], grid)
        self.step2_, self.residuals2_ = _fit_step2(points.task_loss, points.score, self.chance)
        self.single_, self.residuals_single_ = _fit_single(points.N[fin], points.D[fin], points.score[fin], self.chance,
                                                           self.step1_.params_, self.step2_)

    def _bootstrap(self, points: LadderPoints) -> None:
        runs = np.unique(points.run[points.final])
        rng = np.random.default_rng(self.seed)
        W = _engine.multinomial_weights(runs.size, self.n_bootstrap, rng)          # (R, runs)
        fin = np.flatnonzero(points.final)
        col_fin = np.searchsorted(runs, points.run[fin])
        has = np.isin(points.run, runs)
        all_idx = np.flatnonzero(has)
        col_all = np.searchsorted(runs, points.run[all_idx])
        law = self.step1_
        logX = np.log(np.column_stack([points.N[fin], points.D[fin]]))
        theta, conv = law._refit_many(logX, np.log(points.task_loss[fin]), W[:, col_fin], law.minima_[:3],
                                      law._default_bounds())
        p1 = {k: np.asarray(v, float) for k, v in law._from_theta(theta).items()}
        p2, ps = [], []
        start2 = [self.step2_[k] for k in ("ceiling", "k", "L0")]
        start_s = [self.single_[k] for k in ("ceiling", "E", "A", "B", "alpha", "beta")]
        for r in range(self.n_bootstrap):
            w_all = W[r, col_all]
            try:
                p2.append(_fit_step2(points.task_loss[all_idx], points.score[all_idx], self.chance, w_all, start2)[0])
            except FitError:
                p2.append(None)
            try:
                ps.append(_fit_single(points.N[fin], points.D[fin], points.score[fin], self.chance, None, None,
                                      W[r, col_fin], start_s)[0])
            except FitError:
                ps.append(None)
        ok = conv & np.array([a is not None and b is not None for a, b in zip(p2, ps)])
        if ok.sum() < max(10, self.n_bootstrap // 5):
            raise FitError(f"only {int(ok.sum())} of {self.n_bootstrap} joint bootstrap refits converged; "
                           "the intervals cannot be trusted")
        self.boot1_ = {k: v[ok] for k, v in p1.items()}
        self.boot2_ = {k: np.array([p2[i][k] for i in np.flatnonzero(ok)]) for k in ("ceiling", "k", "L0")}
        self.boot_single_ = {k: np.array([ps[i][k] for i in np.flatnonzero(ok)])
                             for k in ("ceiling", "E", "A", "B", "alpha", "beta")}
        self.bootstrap_converged_ = float(ok.mean())

    # -- prediction --------------------------------------------------------------------------------
    def compute_optimal(self, C: float) -> tuple[float, float]:
        """(N, D) minimising the step-1 task loss at compute ``C = 6 N D`` (point fit)."""
        n, d = ChinchillaLaw._frontier(self.step1_.params_, float(C))
        return float(n), float(d)

    def _scores(self, N, D, p1, p2, ps):
        tl = ChinchillaLaw._predict_from(p1, N, D)
        two = accuracy_of_loss(tl, self.chance, p2["ceiling"], p2["k"], p2["L0"])
        one = accuracy_of_size(N, D, self.chance, ps)
        return tl, {"two_step": two, "single_step": one, "stacked": 0.5 * (two + one)}

    def predict(self, N: float | None = None, D: float | None = None, *, C: float | None = None,
                variant: str | None = None, allow_noisy: bool = False) -> dict:
        """Forecast the score of a model with ``N`` parameters trained on ``D`` tokens (or at the compute-optimal
        N, D of compute ``C``), with confidence and prediction intervals, the predictability of the task, and the
        backtest that chose the variant. A task flagged too noisy gets ``score`` None (the numbers go under
        ``withheld``) unless ``allow_noisy``."""
        if (N is None or D is None) and C is None:
            raise ValueError("give N and D, or C")
        if N is None or D is None:
            N, D = self.compute_optimal(C)
        N, D = float(N), float(D)
        v = variant or self.variant_
        tl, sc = self._scores(N, D, self.step1_.params_, self.step2_, self.single_)
        res = {"N": N, "D": D, "compute_flops": 6 * N * D, "variant": v, "task_loss": float(tl), "score": float(sc[v]),
               "by_variant": {k: float(x) for k, x in sc.items()}, "intervals": {}, "chance": self.chance,
               "extrapolation": {"N_over_max": N / self.data_range_["N_max"], "D_over_max": D / self.data_range_["D_max"],
                                 "compute_over_max": 6 * N * D / self.data_range_["C_max"], "fitted_on": self.data_range_},
               "predictability": self.predictability_,
               "backtest": {k: self.backtest_[k] for k in ("origins", "mean_abs_error")}}
        if self.boot1_ is not None:
            tls, scs = self._scores(N, D, self.boot1_, self.boot2_, self.boot_single_)
            draws = scs[v]
            rng = np.random.default_rng(self.seed + 1)
            resid = self._residuals(v)
            noisy = np.clip(draws + rng.choice(resid, size=draws.size), 0.0, 1.0)
            res["intervals"] = {"task_loss": [float(x) for x in percentile_interval(tls, self.level)],
                                "score": [float(x) for x in percentile_interval(draws, self.level)],
                                "score_prediction": [float(x) for x in percentile_interval(noisy, self.level)]}
        if self.predictability_.get("too_noisy") and not allow_noisy:
            res["withheld"] = {"score": res["score"], "intervals": res["intervals"]}
            res["score"], res["intervals"] = None, {}
            res["status"] = "too_noisy"
        else:
            res["status"] = "forecast"
        return res

    def _residuals(self, variant: str) -> np.ndarray:
        """Observation noise of a new model's score (residuals inflated for the parameters fitted): the scatter
        around the loss-to-score curve, or the single-step fit's scatter for that variant."""
        return self.residuals_single_ if variant == "single_step" else self.residuals2_


def _fit_step1(N, D, L, grid=None) -> ChinchillaLaw:
    return ChinchillaLaw(n_bootstrap=0, allow_bounds=True, extrapolation_error=False, n_jobs=1, grid=grid).fit(N, D, L)


def _inflate(resid: np.ndarray, n_params: int) -> np.ndarray:
    return resid * np.sqrt(resid.size / max(1, resid.size - n_params))


def _fit_step2(L, y, floor: float, w=None, start=None) -> tuple[dict, np.ndarray]:
    """Weighted least squares of :func:`accuracy_of_loss` with the floor fixed; multi-start unless ``start``."""
    L, y = np.asarray(L, float), np.asarray(y, float)
    sw = np.ones_like(L) if w is None else np.sqrt(np.asarray(w, float))
    if (sw > 0).sum() < 4:
        raise FitError(f"step 2 (3 parameters) needs at least 4 checkpoints; got {int((sw > 0).sum())}")
    span = max(float(np.ptp(L)), 1e-3)
    lo = [floor + 1e-6, 1e-3 / span, L.min() - 3 * span]
    hi = [1.0, 1e3 / span, L.max() + 3 * span]
    starts = [start] if start is not None else [[min(1.0, max(y.max(), floor + 0.05)) - 1e-6, k0 / span, L00]
                                                for k0 in (2.0, 8.0, 30.0) for L00 in np.linspace(L.min(), L.max(), 4)]
    best = None
    for p0 in starts:
        p0 = np.clip(p0, np.add(lo, 1e-9), np.subtract(hi, 1e-9))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = optimize.least_squares(lambda p: sw * (accuracy_of_loss(L, floor, *p) - y), p0, bounds=(lo, hi))
        if r.success and (best is None or r.cost < best.cost):
            best = r
    if best is None:
        raise FitError("the step-2 sigmoid did not converge from any start")
    p = dict(zip(("ceiling", "k", "L0"), (float(x) for x in best.x)))
    return p, _inflate(y - accuracy_of_loss(L, floor, p["ceiling"], p["k"], p["L0"]), 3)


def _fit_single(N, D, y, floor: float, p1, p2, w=None, start=None) -> tuple[dict, np.ndarray]:
    """Single-step fit on final checkpoints, started from the chained fit (``p1``, ``p2``) or ``start``:
    ``z = k (L0 - L(N, D))`` gives E = k (L0 - E1), A = k A1, B = k B1."""
    N, D, y = (np.asarray(x, float) for x in (N, D, y))
    sw = np.ones_like(y) if w is None else np.sqrt(np.asarray(w, float))
    if start is None:
        k = p2["k"]
        start = [p2["ceiling"], k * (p2["L0"] - p1["E"]), k * p1["A"], k * p1["B"], p1["alpha"], p1["beta"]]
    # Unbounded coordinates for Levenberg-Marquardt: ceiling = floor + (1 - floor) * sigmoid(u), A = e^a,
    # B = e^b, alpha = e^la, beta = e^lb.
    c0 = np.clip((start[0] - floor) / (1 - floor), 1e-6, 1 - 1e-6)
    x0 = np.array([np.log(c0 / (1 - c0)), start[1], np.log(max(start[2], 1e-12)), np.log(max(start[3], 1e-12)),
                   np.log(max(start[4], 1e-4)), np.log(max(start[5], 1e-4))])
    logN, logD = np.log(N), np.log(D)

    def unpack(x):
        return {"ceiling": floor + (1 - floor) / (1 + np.exp(-x[0])), "E": x[1], "A": np.exp(x[2]), "B": np.exp(x[3]),
                "alpha": np.exp(x[4]), "beta": np.exp(x[5])}

    def jac(x):
        al, be = np.exp(x[4]), np.exp(x[5])
        tN, tD = np.exp(x[2] - al * logN), np.exp(x[3] - be * logD)       # A/N^alpha, B/D^beta
        s = 1.0 / (1.0 + np.exp(-np.clip(x[1] - tN - tD, -60, 60)))
        su = 1.0 / (1.0 + np.exp(-x[0]))
        g = (1 - floor) * su * s * (1 - s)
        return sw[:, None] * np.column_stack([(1 - floor) * su * (1 - su) * s * np.ones_like(tN), g, -g * tN, -g * tD,
                                              g * tN * logN * al, g * tD * logD * be])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = optimize.least_squares(lambda x: sw * (accuracy_of_size(N, D, floor, unpack(x)) - y), x0, jac=jac,
                                   method="lm", max_nfev=300)
    if not np.isfinite(r.cost) or not np.isfinite(r.x).all():
        raise FitError("the single-step fit did not converge")
    p = {k: float(v) for k, v in unpack(r.x).items()}
    return p, _inflate(y - accuracy_of_size(N, D, floor, p), 6)


def rolling_origin(points: LadderPoints, *, chance: float = 0.0, n_origins: int = 3, grid=None) -> dict:
    """Backtest every variant on the ladder: at each origin, fit on the runs of smaller final compute (all
    their checkpoints) and forecast the next run's final score. Origins whose fit is impossible are skipped.

    Returns ``{"origins": [...], "mean_abs_error": {variant: points}}``.
    """
    order = points.runs
    origins = []
    for j in range(max(0, order.size - n_origins), order.size):
        train, target = points.subset(order[:j]), order[j]
        i = np.flatnonzero((points.run == target) & points.final)[0]
        fc = TaskLadderForecast.__new__(TaskLadderForecast)
        fc.chance = chance
        try:
            fc._fit_point(train, grid)
        except (FitError, ValueError):
            continue
        N, D = points.N[i], points.D[i]
        fc.data_range_ = None
        tl, sc = fc._scores(N, D, fc.step1_.params_, fc.step2_, fc.single_)
        origins.append({"run": str(target), "N": float(N), "D": float(D), "n_runs_fitted": int(j),
                        "actual_score": float(points.score[i]), "actual_task_loss": float(points.task_loss[i]),
                        "predicted_task_loss": float(tl), "predicted": {k: float(v) for k, v in sc.items()},
                        "abs_error": {k: float(abs(v - points.score[i])) for k, v in sc.items()}})
    mae = {v: float(np.mean([o["abs_error"][v] for o in origins])) if origins else None for v in VARIANTS}
    return {"origins": origins, "mean_abs_error": mae}


def holdout_forecast(points: LadderPoints, n_holdout: int, **forecast_kw) -> dict:
    """Forecast the ``n_holdout`` largest-compute runs from the others: a :class:`TaskLadderForecast`
    (``forecast_kw``: its options) fitted on every checkpoint of the smaller runs only, its variant chosen
    by the backtest on those runs, then each held-out run's final score predicted at its own N and D with
    intervals, against what it scored.

    Returns ``{"fitted_runs", "variant", "predictability", "held_out": [...], "mean_abs_error_points",
    "inside_prediction_interval"}``; a held-out row has the run, N, D, compute, actual and predicted score
    and task loss, the error in points of score, the 95% (``level``) confidence and prediction intervals,
    whether the actual score is inside the latter, and the forecast's status (``too_noisy`` forecasts keep
    their numbers: a backtest reports them).
    """
    order = points.runs
    if not 1 <= n_holdout <= order.size - 6:
        raise ValueError(f"a hold-out of {n_holdout} run(s) leaves {order.size - n_holdout} to fit; "
                         f"the ladder forecast needs at least 6 (the ladder has {order.size})")
    held = order[order.size - n_holdout:]
    fc = TaskLadderForecast(**forecast_kw).fit(points.subset(order[:order.size - n_holdout]))
    rows = []
    for run in held:
        i = np.flatnonzero((points.run == run) & points.final)[0]
        p = fc.predict(points.N[i], points.D[i], allow_noisy=True)
        actual = float(points.score[i])
        pi = p["intervals"].get("score_prediction")
        rows.append({"run": str(run), "N": float(points.N[i]), "D": float(points.D[i]), "compute_flops": p["compute_flops"],
                     "compute_over_max_fitted": p["extrapolation"]["compute_over_max"],
                     "actual_score": actual, "predicted_score": p["score"], "error_points": 100 * (p["score"] - actual),
                     "actual_task_loss": float(points.task_loss[i]), "predicted_task_loss": p["task_loss"],
                     "score_interval": p["intervals"].get("score"), "score_prediction_interval": pi,
                     "inside": None if pi is None else bool(pi[0] <= actual <= pi[1]),
                     "status": "too_noisy" if fc.predictability_.get("too_noisy") else "forecast"})
    inside = [r["inside"] for r in rows if r["inside"] is not None]
    return {"fitted_runs": int(order.size - n_holdout), "variant": fc.variant_, "predictability": fc.predictability_,
            "held_out": rows, "mean_abs_error_points": float(np.mean([abs(r["error_points"]) for r in rows])),
            "inside_prediction_interval": (sum(inside), len(inside)) if inside else None}


def param_intervals(fc: TaskLadderForecast) -> dict:
    """Bootstrap percentile intervals of every fitted parameter of ``fc``, by step (empty without bootstrap)."""
    if fc.boot1_ is None:
        return {}
    with np.errstate(invalid="ignore"):         # unconverged refits are non-finite and counted elsewhere
        return {name: {k: [float(x) for x in percentile_interval(v, fc.level)] for k, v in boot.items()}
                for name, boot in (("step1", fc.boot1_), ("step2", fc.boot2_), ("single_step", fc.boot_single_))}


def compute_for_score(fc: TaskLadderForecast, value: float, *, C_range=(1e15, 1e30)) -> dict:
    """Compute at which ``fc``'s chosen variant reaches ``value``, along the step-1 law's compute-optimal
    (N, D), with a bootstrap interval and the fraction of resamples that reach it within ``C_range``."""
    C = np.geomspace(*C_range, 1201)
    N, D = ChinchillaLaw._frontier(fc.step1_.params_, C)

    def first(scores):       # (…, C) -> compute of the first grid point at or past value (NaN if none)
        hit = np.asarray(scores) >= value
        idx = np.argmax(hit, axis=-1)
        return np.where(hit.any(axis=-1), C[idx], np.nan)

    v = fc.variant_
    point = float(first(fc._scores(N, D, fc.step1_.params_, fc.step2_, fc.single_)[1][v]))
    out = {"score": value, "variant": v, "compute_flops": point, "intervals": {}}
    if fc.boot1_ is not None:
        col = lambda p: {k: np.asarray(x)[:, None] for k, x in p.items()}  # noqa: E731
        draws = first(fc._scores(N[None, :], D[None, :], col(fc.boot1_), col(fc.boot2_), col(fc.boot_single_))[1][v])
        ok = np.isfinite(draws)
        out["reachable_fraction"] = float(ok.mean())
        if ok.sum() > 10:
            out["intervals"]["compute_flops"] = [float(x) for x in percentile_interval(draws[ok], fc.level)]
    return out
