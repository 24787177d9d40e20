"""Release gates: a TOML policy of capability thresholds, evaluated against measured or forecast
evidence, giving pass / review / hold with reasons and an exit code a CI pipeline can act on.

Policy format::

    [[rule]]
    name = "addition-review"
    task = "addition:2"
    metric = "exact_match"          # exact_match, log_likelihood, task_loss, token_edit_distance, brier
    op = ">="                       # >=, >, <=, <
    threshold = 0.9
    action = "review"               # review or hold, when the condition holds
    on_uncertain = "hold"           # when a forecast interval straddles the threshold (default hold)
    rationale = "arithmetic at this level needs a human look"

A rule triggers when its condition holds for the evidence (for a forecast: for the whole interval);
when a forecast's interval straddles the threshold the rule's ``on_uncertain`` action applies. The
decision is the most severe action of all rules.
"""
from __future__ import annotations

import dataclasses
import hashlib
import operator
import re
import tomllib
from pathlib import Path

from .metrics import BOUNDED, METRICS

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
SEVERITY = {"pass": 0, "review": 1, "hold": 2}
EXIT_CODES = {"pass": 0, "review": 10, "hold": 20}
FIELDS = {"name", "task", "metric", "op", "threshold", "action", "on_uncertain", "rationale"}


class PolicyError(ValueError):
    """A malformed policy: the message names the line and the reason."""


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    task: str
    metric: str
    op: str
    threshold: float
    action: str
    on_uncertain: str = "hold"
    rationale: str = ""
    line: int = 0


def _rule_lines(text: str) -> list[int]:
    return [i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"\s*\[\[\s*rule\s*\]\]", line)]


def load_policy(path: str | Path, *, known_tasks: set[str] | None = None) -> tuple[list[Rule], str]:
    """Parse and validate a policy file; returns the rules and the policy's SHA-256 hash.

    Raises:
        PolicyError: TOML syntax, unknown task/metric/operator/action/field, threshold out of range,
            duplicate names -- with the line of the offending rule.
    """
    from ..testtime.tasks import Task
    path = Path(path)
    if path.is_dir():
        raise PolicyError(f"{path} is a directory; give the policy's TOML file")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PolicyError(f"no policy file at {path}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not a text (TOML) file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{path}: not valid TOML ({e})") from None
    raw = data.get("rule")
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{path}: no [[rule]] tables found")
    lines = _rule_lines(text)
    rules, names = [], {}
    for i, r in enumerate(raw):
        line = lines[i] if i < len(lines) else 0
        if not isinstance(r, dict):
            raise PolicyError(f"{path}: 'rule' must be a list of [[rule]] tables, found {type(r).__name__} {r!r}")
        where = f"{path}, line {line} (rule {r.get('name', i + 1)!r})"
        unknown = set(r) - FIELDS
        if unknown:
            raise PolicyError(f"{where}: unknown field(s) {sorted(unknown)}; accepted: {', '.join(sorted(FIELDS))}")
        for req in ("name", "task", "metric", "op", "threshold", "action"):
            if req not in r:
                raise PolicyError(f"{where}: missing {req!r}")
        if r["name"] in names:
            raise PolicyError(f"{where}: duplicate rule name {r['name']!r} (first at line {names[r['name']]})")
        names[r["name"]] = line
        if known_tasks is not None and r["task"] not in known_tasks:
            try:
                Task.parse(r["task"])
            except ValueError:
                raise PolicyError(f"{where}: unknown task {r['task']!r}; known: {', '.join(sorted(known_tasks)) or 'none'}") from None
        elif known_tasks is None:
            try:
                Task.parse(r["task"])
            except ValueError as e:
                raise PolicyError(f"{where}: unknown task {r['task']!r} ({e})") from None
        if r["metric"] not in METRICS:
            raise PolicyError(f"{where}: unknown metric {r['metric']!r}; accepted: {', '.join(METRICS)}")
        if r["op"] not in OPS:
            raise PolicyError(f"{where}: unknown operator {r['op']!r}; accepted: {', '.join(OPS)}")
        if r["action"] not in ("review", "hold"):
            raise PolicyError(f"{where}: action must be 'review' or 'hold', not {r['action']!r}")
        if r.get("on_uncertain", "hold") not in SEVERITY:
            raise PolicyError(f"{where}: on_uncertain must be pass, review or hold")
        if not isinstance(r["threshold"], (int, float)) or isinstance(r["threshold"], bool):
            raise PolicyError(f"{where}: threshold must be a number")
        lo, hi = BOUNDED.get(r["metric"], (-float("inf"), float("inf")))
        if r["metric"] == "token_edit_distance":
            lo = 0.0
        if r["metric"] == "log_likelihood":
            hi = 0.0
        if not lo <= r["threshold"] <= hi:
            raise PolicyError(f"{where}: threshold {r['threshold']} out of range [{lo}, {hi}] for {r['metric']}")
        rules.append(Rule(name=r["name"], task=r["task"], metric=r["metric"], op=r["op"], threshold=float(r["threshold"]),
                          action=r["action"], on_uncertain=r.get("on_uncertain", "hold"),
                          rationale=r.get("rationale", ""), line=line))
    return rules, hashlib.sha256(text.encode()).hexdigest()


def decide(rules: list[Rule], evidence: dict) -> dict:
    """Evaluate rules against ``evidence[(task, metric)] = {"value", "interval" (or None), "kind"}``.

    Returns ``{"decision", "exit_code", "reasons", "rules"}``; a rule without evidence holds
    (nothing can be shown to be safe without it).
    """
    results, decision = [], "pass"
    for r in rules:
        ev = evidence.get((r.task, r.metric))
        if ev is None:
            outcome, why = "hold", f"no evidence for {r.task} {r.metric}"
        else:
            op = OPS[r.op]
            iv = ev.get("interval")
            if iv:
                hits = [op(iv[0], r.threshold), op(iv[1], r.threshold)]
                if all(hits):
                    outcome, why = r.action, f"the whole interval [{iv[0]:.4g}, {iv[1]:.4g}] is {r.op} {r.threshold}"
                elif not any(hits):
                    outcome, why = "pass", f"the whole interval [{iv[0]:.4g}, {iv[1]:.4g}] is clear of {r.op} {r.threshold}"
                else:
                    outcome, why = r.on_uncertain, f"the interval [{iv[0]:.4g}, {iv[1]:.4g}] straddles {r.threshold}"
            elif op(ev["value"], r.threshold):
                outcome, why = r.action, f"{ev['kind']} {ev['value']:.4g} {r.op} {r.threshold}"
            else:
                outcome, why = "pass", f"{ev['kind']} {ev['value']:.4g} is not {r.op} {r.threshold}"
        results.append({"rule": r.name, "line": r.line, "task": r.task, "metric": r.metric, "outcome": outcome,
                        "reason": why, "rationale": r.rationale, "evidence": ev})
        if SEVERITY[outcome] > SEVERITY[decision]:
            decision = outcome
    reasons = [f"{x['rule']}: {x['outcome']} — {x['reason']}" for x in results if x["outcome"] != "pass"]
    return {"decision": decision, "exit_code": EXIT_CODES[decision], "reasons": reasons, "rules": results}
