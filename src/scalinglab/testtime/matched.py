"""Thinking longer, sampling more, or a bigger model, at matched inference compute.

From verified samples of two lab models (a smaller and a larger one) in two formats (``direct``: answer at
once; ``scratchpad``: digit-by-digit work first, i.e. longer sequential reasoning), accuracy against
inference FLOPs per query for every way to spend them:

* ``majority``: k samples, the most frequent final answer (maj@k, from the sampled answers);
* ``verifier``: resample until an imperfect verifier (true/false-positive rates) accepts, at most k;
  no answer when it never does (:func:`~scalinglab.testtime.verifier.outcome_probabilities`);
* ``exact``: an exact verifier picks a correct sample when one exists (pass@k, unbiased estimator).

Per difficulty level (as in Snell et al. 2024, https://arxiv.org/abs/2408.03314: bins of the smaller model's
own success rate) the compute-optimal choice at each budget, for each verifier at hand (none: majority
only; an imperfect one; an exact one), among both models, both formats and every k; the exchange rate against the larger model
(the smaller model's inference FLOPs per query that reach the larger model's one-sample accuracy, over the
larger model's); and a total-cost view, training plus serving ``Q`` queries (Sardana et al. 2023,
https://arxiv.org/abs/2401.00448), with the query count where the larger model becomes the cheaper choice.

Difficulty bins come from one half of each problem's samples (even sample ids) and every accuracy from the
other half, so a problem's bin does not select on the noise that scores it. Inference FLOPs per query are k
times the mean FLOPs of one sample (prompt and generated tokens, ``2 N_active`` per token plus attention);
the verifier's own cost is not counted.
"""
from __future__ import annotations

import math

import numpy as np

STRATEGIES = ("majority", "verifier", "exact")
REGIMES = {"none": ("majority",), "imperfect": ("majority", "verifier"), "exact": ("majority", "exact")}
FORMATS = ("direct", "scratchpad")


def _split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(difficulty half, evaluation half) of one problem's samples, by sample id."""
    def idx(r):
        try:
            return int(r["sample_id"])
        except (TypeError, ValueError):
            return hash(r["sample_id"])
    rows = sorted(rows, key=idx)
    return rows[0::2], rows[1::2]


def _curve_points(flops: np.ndarray, acc: np.ndarray) -> list[tuple[float, float]]:
    return [(float(f), float(a)) for f, a in zip(flops, acc)]


def flops_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """The least inference FLOPs at which an accuracy-vs-FLOPs curve reaches ``target``: log-linear
    interpolation between its points, over the running best (more compute may always be spent like less)."""
    best_f, best_a = None, -1.0
    for f, a in sorted(points):
        if a >= target:
            if best_f is None:
                return f
            t = (target - best_a) / (a - best_a)
            return float(math.exp(math.log(best_f) + t * (math.log(f) - math.log(best_f))))
        if a > best_a:
            best_f, best_a = f, a
    return None


def matched_compute(groups: dict, task: str, small: str, large: str, *, ks=(1, 2, 4, 8, 16, 32), tpr: float = 0.9,
                    fpr: float = 0.1, n_bins: int = 3, train_flops: dict | None = None, n_active: dict | None = None,
                    queries=(1e3, 1e6, 1e9), n_resamples: int = 400, seed: int = 0) -> dict:
    """The matched-compute study (module docstring) on ``groups`` (:func:`~scalinglab.testtime.samples.load_groups`)
    of ``task`` (``KIND:DIGITS``) with per-sample rows for ``small`` and ``large`` in both formats.

    ``train_flops`` and ``n_active`` (by model name) add the exchange rate's context and the total-cost view."""
    from .estimators import majority_at_k, pass_at_k
    from .verifier import outcome_probabilities
    models = (small, large)
    keys = {(m, f): (f"{task}:{f}", m) for m in models for f in FORMATS}
    missing = [f"{t}/{m}" for (t, m) in keys.values() if (t, m) not in groups or not groups[(t, m)]["samples"]]
    if missing:
        raise ValueError(f"no per-sample rows for {', '.join(missing)} (sample both formats of both models first)")
    problems = sorted(set.intersection(*(set(groups[k]["samples"]) for k in keys.values())))
    if len(problems) < n_bins:
        raise ValueError(f"only {len(problems)} problems are sampled in every group; need at least {n_bins}")
    halves = {mf: [_split(groups[key]["samples"][p]) for p in problems] for mf, key in keys.items()}
    n_eval = min(len(evaluation) for h in halves.values() for _, evaluation in h)
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= n_eval})
    if not ks:
        raise ValueError(f"every problem needs at least 2 samples per group (one per half); the fewest is {2 * n_eval}")
    rng = np.random.default_rng(seed)

    # difficulty: the smaller model's success rate over both formats, on the difficulty half
    diff = np.array([np.mean([r["correct"] for f in FORMATS for r in halves[(small, f)][i][0]])
                     for i in range(len(problems))])
    order = np.argsort(-diff, kind="stable")             # easiest first
    bins = np.empty(len(problems), int)
    for b, chunk in enumerate(np.array_split(order, n_bins)):
        bins[chunk] = b
    bin_info = [{"level": b + 1, "problems": int((bins == b).sum()),
                 "small_success_range": [float(diff[bins == b].min()), float(diff[bins == b].max())]} for b in range(n_bins)]

    options = []          # one per (model, format, strategy): per-problem accuracy (P, K) and FLOPs per query (K,)
    for (m, f), key in keys.items():
        per_problem = [evaluation[:n_eval] for _, evaluation in halves[(m, f)]]
        flops_sample = float(np.mean([r["flops"] for rows in per_problem for r in rows if r.get("flops") is not None]
                                     or [math.nan]))
        if not math.isfinite(flops_sample):
            raise ValueError(f"{key[0]}/{m}: samples carry no inference FLOPs (sample them with scalinglab sample)")
        c = np.array([sum(int(r["correct"]) for r in rows) for rows in per_problem])
        p_hat = c / n_eval
        acc = {"exact": pass_at_k(np.full(len(problems), n_eval), c, np.array(ks)),
               "verifier": outcome_probabilities(p_hat, np.array(ks), tpr, fpr)["correct"]}
        maj = np.empty((len(problems), len(ks)))
        for i, rows in enumerate(per_problem):
            ans = [r["answer"] if r["answer"] is not None else f"<none:{r['sample_id']}>" for r in rows]
            cor = [bool(r["correct"]) for r in rows]
            for j, k in enumerate(ks):
                maj[i, j] = majority_at_k(ans, cor, k, n_resamples=n_resamples, rng=rng)
        acc["majority"] = maj
        tokens_sample = float(np.mean([r.get("tokens") or 0.0 for rows in per_problem for r in rows]))
        for s in STRATEGIES:
            options.append({"model": m, "format": f, "strategy": s, "flops_per_sample": flops_sample,
                            "tokens_per_sample": tokens_sample, "flops": flops_sample * np.array(ks, float),
                            "acc": np.asarray(acc[s], float)})

    def level_acc(o, b):
        return o["acc"][bins == b].mean(axis=0) if b is not None else o["acc"].mean(axis=0)

    levels = [None] + list(range(n_bins))
    curves = []
    for o in options:
        entry = {k: o[k] for k in ("model", "format", "strategy", "flops_per_sample", "tokens_per_sample")}
        entry.update(k=ks, flops=o["flops"].tolist(), accuracy=level_acc(o, None).tolist(),
                     by_level=[level_acc(o, b).tolist() for b in range(n_bins)])
        curves.append(entry)

    lo = min(o["flops"][0] for o in options)
    hi = max(o["flops"][-1] for o in options)
    budgets = np.geomspace(lo, hi, 9)
    optimal = []
    for regime, allowed in REGIMES.items():
        for b in levels:
            rows = []
            for B in budgets:
                best = None
                for o in options:
                    if o["strategy"] not in allowed:
                        continue
                    a = level_acc(o, b)
                    ok = np.flatnonzero(o["flops"] <= B * (1 + 1e-9))
                    if ok.size:
                        j = ok[np.argmax(a[ok])]
                        if best is None or a[j] > best["accuracy"] + 1e-12:
                            best = {"budget_flops": float(B), "model": o["model"], "format": o["format"],
                                    "strategy": o["strategy"], "k": ks[j], "accuracy": float(a[j])}
                if best:
                    rows.append(best)
            optimal.append({"verifier": regime, "level": "all" if b is None else b + 1, "choices": rows})

    exchange = []
    for b in levels:
        for f_ref in FORMATS:
            ref = next(o for o in options if o["model"] == large and o["format"] == f_ref and o["strategy"] == "majority")
            target = float(level_acc(ref, b)[0])
            ref_flops = float(ref["flops"][0])
            for s in STRATEGIES:
                pts = [pt for o in options if o["model"] == small and o["strategy"] == s
                       for pt in _curve_points(o["flops"], level_acc(o, b))]
                need = flops_to_reach(pts, target) if target > 0 else None
                best_small = max(a for _, a in pts)
                exchange.append({"level": "all" if b is None else b + 1, "large_format": f_ref, "large_accuracy": target,
                                 "large_flops_per_query": ref_flops, "small_strategy": s,
                                 "small_flops_per_query": need, "small_best_accuracy": best_small,
                                 "exchange_rate": need / ref_flops if need else None})
    out = {"task": task, "small": small, "large": large, "k": ks, "samples_per_group": 2 * n_eval,
           "evaluation_samples": n_eval, "problems": len(problems), "tpr": tpr, "fpr": fpr, "levels": bin_info,
           "curves": curves, "compute_optimal": optimal, "exchange": exchange,
           "method": ("difficulty from the even-numbered samples, accuracy from the odd-numbered ones; inference FLOPs per "
                      "query = k x the mean FLOPs of one sample; the verifier's cost is not counted")}
    if n_active:
        out["n_active"] = {m: n_active.get(m) for m in models}
        if n_active.get(small) and n_active.get(large):
            out["size_ratio"] = n_active[large] / n_active[small]
    if train_flops and train_flops.get(small) and train_flops.get(large):
        out["total_cost"] = _total_cost(exchange, train_flops[small], train_flops[large], queries)
    return out


def _total_cost(exchange: list[dict], t_small: float, t_large: float, queries) -> list[dict]:
    """Training plus serving ``Q`` queries at the larger model's one-sample accuracy (level ``all``): each
    model's total FLOPs and the query count above which the larger model is the cheaper way there."""
    rows = []
    for e in exchange:
        if e["level"] != "all":
            continue
        f_s, f_l = e["small_flops_per_query"], e["large_flops_per_query"]
        row = {"large_format": e["large_format"], "small_strategy": e["small_strategy"], "accuracy": e["large_accuracy"],
               "train_flops": {"small": t_small, "large": t_large}, "by_queries": []}
        for q in queries:
            row["by_queries"].append({"queries": float(q), "small": t_small + q * f_s if f_s else None,
                                      "large": t_large + q * f_l})
        if f_s is None:
            row["crossover_queries"], row["note"] = 0.0, "the smaller model does not reach this accuracy at any k sampled"
        elif f_s <= f_l:
            row["crossover_queries"] = None if t_small <= t_large else 0.0
            row["note"] = "the smaller model is as cheap or cheaper per query: the larger never pays back its training"
        else:
            row["crossover_queries"] = max(0.0, (t_large - t_small) / (f_s - f_l))
        rows.append(row)
    return rows


def matched_compute_from_store(store, task: str, small: str | None = None, large: str | None = None, **kwargs) -> dict:
    """:func:`matched_compute` on the samples in ``store`` (both formats of ``task``), with each model's active
    parameters and training FLOPs (``6 N D``) from the run its samples came from (``source = sample:RUN_ID``).
    Without ``small`` and ``large``: the models with the fewest and the most active parameters among those
    sampled in both formats."""
    from .samples import load_groups
    groups = {}
    for fmt in FORMATS:
        groups.update(load_groups(store=store, task=f"{task}:{fmt}"))
    runs_of: dict = {}
    for (t, m), g in groups.items():
        for rows in g["samples"].values():
            for r in rows:
                if r.get("source", "").startswith("sample:"):
                    runs_of.setdefault(m, set()).add(r["source"].split(":", 1)[1])
    facts = {}
    for m, ids in runs_of.items():
        runs = [r for r in (store.run(i) for i in ids) if r is not None]
        if len(runs) == 1 and runs[0].n_active:
            facts[m] = (runs[0].n_active, runs[0].flops_6nd)
    if small is None or large is None:
        both = [m for m in {m for _, m in groups} if all((f"{task}:{f}", m) in groups for f in FORMATS)]
        sized = sorted((facts[m][0], m) for m in both if m in facts)
        if len(sized) < 2:
            raise ValueError(f"need two lab models sampled in both formats of {task} (scalinglab sample --format direct "
                             f"and --format scratchpad), found {len(sized)}; or name them with --small and --large")
        small = small if small is not None else sized[0][1]
        large = large if large is not None else sized[-1][1]
    n_active = {m: facts[m][0] for m in (small, large) if m in facts}
    train_flops = {m: facts[m][1] for m in (small, large) if m in facts and facts[m][1]}
    return matched_compute(groups, task, small, large, n_active=n_active or None, train_flops=train_flops or None,
                           **kwargs)
