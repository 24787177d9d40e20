"""Samples anyone has: import per-problem counts or per-sample rows, validate strictly, and group
them for the analyses. Works on a file directly or on the store."""
from __future__ import annotations

import collections
import math
from pathlib import Path

import numpy as np

from ..importers import ImportFormatError, read_table
from ..store import RunStore

TRUE = {"1", "true", "t", "yes", "y", "correct", "pass"}
FALSE = {"0", "false", "f", "no", "n", "incorrect", "fail"}
ALIASES = {
    "problem": ("problem", "problem_id", "task_id", "question_id", "id"),
    "sample_id": ("sample_id", "sample", "attempt", "seed"),
    "answer": ("answer", "final_answer", "prediction"),
    "correct": ("correct", "is_correct", "passed", "label"),
    "score": ("score", "verifier_score", "reward"),
    "verdict": ("verdict", "verifier_verdict", "accepted"),
    "tokens": ("tokens", "num_tokens", "n_tokens", "output_tokens"),
    "flops": ("flops", "inference_flops"),
    "model": ("model", "model_name"),
    "task": ("task", "benchmark", "dataset"),
    "n": ("n", "num_samples", "n_samples"),
    "c": ("c", "num_correct", "n_correct"),
}


def _bool(value, where: str, column: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ImportFormatError(f"{where}: {column} = {value!r} is not a boolean (accepted: true/false, 1/0, yes/no)")


def _count(value) -> int | None:
    """A sample count as a whole number (2.0 and "2" are, 2.5, "inf" and 10^13 are not), else None."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(x) or x != int(x) or not 0 <= x <= 1e12:
        return None
    return int(x)


def _col(columns, field):
    return next((a for a in ALIASES[field] if a in columns), None)


def parse_samples(path: str | Path, *, task: str | None = None, model: str | None = None) -> dict:
    """Read a samples file: ``{"mode": "counts"|"samples", "rows": [...], "counts": [...]}``.

    Raises:
        ImportFormatError: every problem found (with row numbers), nothing returned.
    """
    columns, rows, fmt = read_table(path)
    source = f"import:{Path(path).name}"
    first = 2 if fmt in ("csv", "tsv") else 1
    pc = _col(columns, "problem")
    if pc is None:
        raise ImportFormatError(f"{path}: no problem id column (looked for {', '.join(ALIASES['problem'])}; "
                                f"columns found: {', '.join(columns)})")
    mc, tc = _col(columns, "model"), _col(columns, "task")
    errors: list[str] = []
    out_rows, out_counts = [], []
    nc, cc = _col(columns, "n"), _col(columns, "c")
    if nc and cc:
        seen = {}
        for i, r in enumerate(rows):
            where = f"row {i + first}"
            n, c = _count(r.get(nc)), _count(r.get(cc))
            if n is None or c is None:
                errors.append(f"{where}: n={r.get(nc)!r}, c={r.get(cc)!r} must be whole numbers of samples "
                              "(accepted: 0, 1, 2, ... up to 10^12)")
                continue
            if n < 1 or c < 0:
                errors.append(f"{where}: need n >= 1 and c >= 0 (n={n}, c={c})")
            elif c > n:
                errors.append(f"{where}: c={c} > n={n}")
            prob = r.get(pc)
            if prob in (None, ""):
                errors.append(f"{where}: missing problem id")
                continue
            key = (str(r.get(tc) if tc else task or "default"), str(r.get(mc) if mc else model or "default"), str(prob))
            if key in seen:
                errors.append(f"{where}: duplicate of {seen[key]} (problem {prob!r})")
            seen[key] = where
            out_counts.append({"source": source, "task": key[0], "model": key[1], "problem": key[2], "n": n, "c": c})
        mode = "counts"
    else:
        kc = _col(columns, "correct")
        if kc is None:
            raise ImportFormatError(f"{path}: need either n and c columns (per-problem counts) or a correctness column "
                                    f"({', '.join(ALIASES['correct'])}); columns found: {', '.join(columns)}")
        sc, ac, vc, tk, fc, scc = (_col(columns, f) for f in ("sample_id", "answer", "verdict", "tokens", "flops", "score"))
        seen, per_problem = {}, collections.Counter()
        for i, r in enumerate(rows):
            where = f"row {i + first}"
            prob = r.get(pc)
            if prob in (None, ""):
                errors.append(f"{where}: missing problem id")
                continue
            key3 = (str(r.get(tc) if tc else task or "default"), str(r.get(mc) if mc else model or "default"), str(prob))
            per_problem[key3] += 1
            sid = r.get(sc) if sc else per_problem[key3] - 1
            if sid in (None, ""):
                errors.append(f"{where}: missing sample id")
                continue
            try:
                correct = _bool(r.get(kc), where, kc)
                verdict = _bool(r.get(vc), where, vc) if vc and r.get(vc) not in (None, "") else None
                score = float(r[scc]) if scc and r.get(scc) not in (None, "") else None
                tokens = float(r[tk]) if tk and r.get(tk) not in (None, "") else None
                flops = float(r[fc]) if fc and r.get(fc) not in (None, "") else None
            except ImportFormatError as e:
                errors.append(str(e))
                continue
            except ValueError as e:
                errors.append(f"{where}: {e}")
                continue
            if score is not None and not math.isfinite(score):
                errors.append(f"{where}: score {score} is not finite")
            for what, value in (("tokens", tokens), ("flops", flops)):
                if value is not None and not (math.isfinite(value) and value >= 0):
                    errors.append(f"{where}: {what} = {value:g} must be a finite number >= 0")
            key = key3 + (str(sid),)
            if key in seen:
                errors.append(f"{where}: duplicate sample {sid!r} of problem {prob!r} (first at {seen[key]})")
            seen[key] = where
            out_rows.append({"source": source, "task": key3[0], "model": key3[1], "problem": key3[2], "sample_id": str(sid),
                             "answer": None if not ac or r.get(ac) is None else str(r.get(ac)), "correct": int(correct),
                             "score": score, "verdict": None if verdict is None else int(verdict), "tokens": tokens,
                             "flops": flops})
        mode = "samples"
    if errors:
        shown = "\n  ".join(errors[:25])
        raise ImportFormatError(f"{path}: {len(errors)} problem(s), nothing imported:\n  {shown}")
    if not out_rows and not out_counts:
        raise ImportFormatError(f"{path}: no data rows")
    return {"mode": mode, "rows": out_rows, "counts": out_counts}


def import_samples(path, store: RunStore, *, task=None, model=None, on_duplicate: str = "error") -> dict:
    parsed = parse_samples(path, task=task, model=model)
    store.add_samples(parsed["rows"], parsed["counts"], on_duplicate=on_duplicate)
    return summary(parsed)


def summary(parsed: dict) -> dict:
    """What an import of ``parsed`` holds: mode, samples, problems and (task/model) groups."""
    keys = {(r["task"], r["model"]) for r in parsed["rows"] + parsed["counts"]}
    return {"mode": parsed["mode"], "samples": len(parsed["rows"]), "problems": len({(r["task"], r["model"], r["problem"])
                                                                                    for r in parsed["rows"] + parsed["counts"]}),
            "groups": sorted(f"{t}/{m}" for t, m in keys)}


def group(rows: list[dict], counts: list[dict]) -> dict:
    """``{(task, model): {"problems": [...], "n": array, "c": array, "samples": {problem: [rows]}}}``."""
    out: dict = {}
    for r in counts:
        g = out.setdefault((r["task"], r["model"]), {"n": {}, "c": {}, "samples": {}})
        g["n"][r["problem"]], g["c"][r["problem"]] = r["n"], r["c"]
    for r in rows:
        g = out.setdefault((r["task"], r["model"]), {"n": {}, "c": {}, "samples": {}})
        g["samples"].setdefault(r["problem"], []).append(r)
    for g in out.values():
        for prob, rs in g["samples"].items():
            g["n"][prob] = len(rs)
            g["c"][prob] = sum(int(r["correct"]) for r in rs)
        probs = sorted(g["n"])
        g["problems"] = probs
        g["n"] = np.array([g["n"][p] for p in probs])
        g["c"] = np.array([g["c"][p] for p in probs])
    return out


def load_groups(path=None, store: RunStore | None = None, *, task=None, model=None) -> dict:
    """Grouped samples from a file or the store."""
    if path is not None:
        parsed = parse_samples(path, task=task, model=model)
        rows, counts = parsed["rows"], parsed["counts"]
    else:
        rows, counts = store.samples(task, model), store.problem_counts(task, model)
    if task:
        rows, counts = [r for r in rows if r["task"] == task], [r for r in counts if r["task"] == task]
    if model:
        rows, counts = [r for r in rows if r["model"] == model], [r for r in counts if r["model"] == model]
    return group(rows, counts)
