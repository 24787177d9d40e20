"""Compare recipes at scale: the same IsoFLOP ladder (budgets, sizes rule, data order, seeds) trained for a
baseline recipe and candidates, each fitted, and the compute-equivalent multiplier of each candidate per
budget with the verdict on its trend (:mod:`scalinglab.comparison`).

A recipe is a named set of options the trainer supports: architecture (dense or MoE with its expert count,
top-k and granularity), sequence mixer (attention, a selective SSM, or a hybrid), optimizer (AdamW or Muon),
training data (raw, deduplicated, quality-filtered or both; same token budget, same validation text),
tokenizer (bytes or BPE; losses are then compared in bits per byte) and the LR rule's anchor. Every run records its recipe in the store (``extra.recipe``) and is keyed by its
full config, so a re-run skips what is finished, and the baseline's runs are those of a plain ladder.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

from ..comparison import compare_recipes
from ..store import Run, RunStore
from ..train.config import MIXERS
from ..train.curation import DATA_FILTERS, split_corpus_filter
from ..train.executors import Executor, InlineExecutor
from ..train.ladder import LadderEntry, LadderSpec, design_ladder, ladder_compute, train_entries

RECIPE_OPTIONS = {"arch": ("dense", "moe"), "n_experts": int, "top_k": int, "granularity": int, "mixer": MIXERS,
                  "optimizer": ("adamw", "muon"), "data": ("raw",) + DATA_FILTERS, "tokenizer": ("byte", "bpe"),
                  "lr": float}
RECIPES = {"dense": {}, "moe": {"arch": "moe"}, "ssm": {"mixer": "ssm"}, "hybrid": {"mixer": "hybrid"},
           "muon": {"optimizer": "muon"}, "curated": {"data": "curated"}, "dedup": {"data": "dedup"},
           "bpe": {"tokenizer": "bpe"}}
MOE_EXPANSION = 2      # experts per active expert of the ``moe`` recipe (4 experts, top-2)
RECIPE_HELP = ("NAME or NAME:KEY=VALUE,... with NAME one of " + ", ".join(RECIPES) + " (or a new name) and KEY one of "
               + ", ".join(RECIPE_OPTIONS) + ", e.g. moe, muon, 'moe:n_experts=8,top_k=1'")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """One compared recipe: its name (as written) and the ladder options it sets."""

    name: str
    options: tuple[tuple[str, object], ...] = ()

    def apply(self, spec: LadderSpec) -> LadderSpec:
        """The ladder spec of this recipe: ``spec`` with the recipe's options. Granularity G (Krajewski et
        al. 2024: d_ff over an expert's width) is G active experts of width d_ff / G among
        ``n_experts`` (default G x :data:`MOE_EXPANSION`); curated data is the corpus with its suffix."""
        o = dict(self.options)
        changes = {"families": (o.pop("arch", "dense"),)}
        if o.pop("granularity", None) is not None:
            changes["n_experts"], changes["top_k"] = _experts(dict(self.options), spec.n_experts, spec.top_k)
            o.pop("n_experts", None)
        if "data" in o:      # the recipe's curation replaces any the corpus names
            data, base = o.pop("data"), split_corpus_filter(spec.corpus)[0]
            changes["corpus"] = base if data == "raw" else f"{base}+{data}"
        changes.update(o)
        return dataclasses.replace(spec, **changes)

    def to_dict(self) -> dict:
        return {"name": self.name, **dict(self.options)}


def parse_recipe(text: str) -> Recipe:
    """``NAME`` or ``NAME:KEY=VALUE,...`` (:data:`RECIPE_HELP`); raises ValueError naming what is accepted."""
    text = (text or "").strip()
    base, _, rest = text.partition(":")
    if not base:
        raise ValueError(f"empty recipe; accepted: {RECIPE_HELP}")
    options = dict(RECIPES.get(base, {}))
    if base not in RECIPES and not rest:
        raise ValueError(f"unknown recipe {base!r} without options; accepted: {RECIPE_HELP}")
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        kind = RECIPE_OPTIONS.get(key.strip())
        if not eq or kind is None:
            raise ValueError(f"recipe {text!r}: cannot read {item!r}; accepted: {RECIPE_HELP}")
        value = value.strip()
        if isinstance(kind, tuple):
            if value not in kind:
                raise ValueError(f"recipe {text!r}: {key} must be one of {', '.join(kind)}, not {value!r}")
            options[key.strip()] = value
            continue
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"recipe {text!r}: {key} must be a {'whole ' if kind is int else ''}number, "
                             f"not {value!r}") from None
        if not (math.isfinite(number) and number > 0):
            raise ValueError(f"recipe {text!r}: {key} must be positive and finite, not {value!r}")
        options[key.strip()] = number
    if ({"n_experts", "top_k", "granularity"} & set(options)) and options.get("arch") != "moe":
        raise ValueError(f"recipe {text!r}: n_experts, top_k and granularity apply to arch=moe")
    if "granularity" in options and "top_k" in options:
        raise ValueError(f"recipe {text!r}: granularity sets top_k (G active experts of width d_ff / G); give one")
    defaults = LadderSpec.__dataclass_fields__
    n, k = _experts(options, defaults["n_experts"].default, defaults["top_k"].default)
    if options.get("arch") == "moe" and k > n:
        raise ValueError(f"recipe {text!r}: {k} active experts need at least {k} experts (n_experts)")
    return Recipe(name=text, options=tuple(sorted(options.items())))


def _experts(options: dict, n_experts: int, top_k: int) -> tuple[int, int]:
    """(experts, active experts) of a recipe's options over the spec's: granularity G sets G active experts
    among ``n_experts`` (default G x :data:`MOE_EXPANSION`)."""
    g = options.get("granularity")
    if g is not None:
        return options.get("n_experts", g * MOE_EXPANSION), g
    return options.get("n_experts", n_experts), options.get("top_k", top_k)


def recipe_entries(spec: LadderSpec, recipe: Recipe, vocab_size: int) -> list[LadderEntry]:
    """The recipe's IsoFLOP grid, its runs named and stored under the recipe's name."""
    rspec = recipe.apply(spec)
    arch = rspec.families[0]
    entries = design_ladder(rspec, vocab_size)
    for e in entries:
        e.name = recipe.name + e.name[len(arch):]
        e.family = recipe.name
        e.recipe = recipe.to_dict()
        e.hp_rule = rspec.hp_rule()
    return entries


def loss_scales(corpus: str, tokenizers: dict[str, str]) -> tuple[dict[str, float], str]:
    """Per recipe, the factor from its loss (nats per token) to bits per byte when the tokenizers differ
    (bytes per token measured on the validation split); otherwise 1 and nats/token."""
    if len(set(tokenizers.values())) <= 1:
        return {name: 1.0 for name in tokenizers}, "nats/token"
    from ..train.data import load_tokens
    n_bytes = load_tokens(corpus, "byte").val.size
    per = {tok: n_bytes / load_tokens(corpus, tok).val.size for tok in set(tokenizers.values())}
    return {name: 1.0 / (math.log(2) * per[tok]) for name, tok in tokenizers.items()}, "bits/byte"


def serving_side(recipes: dict[str, list[Run]], context: int | None = None) -> dict:
    """Per recipe and budget, the best run's total and active parameters, bf16 weight memory, decode FLOPs per
    token and the memory one sequence holds (key/value cache or SSM state) at ``context`` tokens (the run's
    own sequence length by default; :func:`~scalinglab.train.config.decode_costs`)."""
    from ..accounting import inference_flops_per_token, weight_bytes
    from ..train.config import ModelConfig, decode_costs
    out = {}
    for name, runs in recipes.items():
        best: dict = {}
        for r in runs:
            if r.status == "finished" and r.final_loss is not None and (r.budget not in best or
                                                                        r.final_loss < best[r.budget].final_loss):
                best[r.budget] = r
        rows = []
        for budget, r in sorted(best.items(), key=lambda kv: kv[0] or 0.0):
            model = (r.config or {}).get("model") or {}
            ctx = context or model.get("seq_len", 0)
            n_total, n_active = r.n_total or r.n_active, r.n_active or r.n_total
            try:       # a lab run: its own structure (mixers, experts) counted
                costs = decode_costs(ModelConfig(**model), ctx)
                flops, state = costs["decode_flops_per_token"], costs["sequence_state_bytes"]
            except (TypeError, ValueError):     # an imported run: 2 N_active + attention (Kaplan's convention)
                flops = inference_flops_per_token(n_active, model.get("n_layers", 0), ctx,
                                                  model.get("d_model", 0)) if n_active else None
                state = None
            rows.append({"budget": budget, "run": r.name, "n_total": n_total, "n_active": n_active,
                         "weight_bytes_bf16": weight_bytes(n_total, "bf16") if n_total else None,
                         "decode_flops_per_token": flops, "sequence_state_bytes_bf16": state,
                         "mixer": model.get("mixer", "attention"), "context": ctx, "loss": r.final_loss})
        out[name] = rows
    return out


def stored_recipe_runs(store: RunStore, name: str) -> list[Run]:
    """Finished grid runs of a family or recipe in the store: family ``name`` or ``extra.recipe.name`` ``name``
    (LR-sweep and verification runs left out)."""
    return [r for r in store.runs(status="finished")
            if (r.family == name or ((r.extra or {}).get("recipe") or {}).get("name") == name)
            and (r.extra or {}).get("role", "grid") == "grid"]


def compare_stored(store: RunStore, baseline: str, candidates: list[str], *, n_convention: str = "n_active",
                   n_bootstrap: int = 400, seed: int = 0, out: str | Path | None = None, figures: bool = True) -> dict:
    """The comparison on runs already in the store (trained or imported), selected by family or recipe."""
    recipes = {name: stored_recipe_runs(store, name) for name in [baseline, *candidates]}
    tokenizers = {name: _tokenizer(runs) for name, runs in recipes.items()}
    corpora = {(r.config or {}).get("corpus") for runs in recipes.values() for r in runs} - {None}
    if len(set(tokenizers.values())) > 1 and len(corpora) != 1:
        raise ValueError("the recipes use different tokenizers but no single corpus to measure bytes per token on")
    scale, units = loss_scales(next(iter(corpora), "stdlib"), tokenizers)
    return _finish(recipes, baseline, scale, units, n_convention, n_bootstrap, seed, out, figures, store)


def _tokenizer(runs: list[Run]) -> str:
    toks = {(r.config or {}).get("tokenizer", "byte") for r in runs}
    if len(toks) > 1:
        raise ValueError(f"one recipe mixes tokenizers ({', '.join(sorted(toks))}); compare them as separate recipes")
    return next(iter(toks), "byte")


def _finish(recipes, baseline, scale, units, n_convention, n_bootstrap, seed, out, figures, store) -> dict:
    result = compare_recipes(recipes, baseline, n_convention=n_convention, loss_scale=scale, loss_units=units,
                             n_bootstrap=n_bootstrap, seed=seed)
    result["serving"] = serving_side(recipes)
    if figures and out is not None:
        from ..report.figures import compare_figure
        result["figures"] = compare_figure(result, out)
    store.add_decision("compare", " vs ".join([baseline, *[n for n in recipes if n != baseline]]), "measured",
                       {k: v for k, v in result.items() if k != "figures"})
    return result


def run_compare(spec: LadderSpec, baseline: Recipe, candidates: list[Recipe], store: RunStore, *,
                executor: Executor | None = None, checkpoint_dir: str | Path = "scalinglab-out/checkpoints",
                out: str | Path = "scalinglab-out/compare", figures: bool = True, show_progress: bool = True,
                log: Callable[[str], None] = print) -> dict:
    """Train the same IsoFLOP ladder for ``baseline`` and each candidate (finished runs skipped), then compare.

    With ``spec.lr_sweep`` each recipe fits its own LR rule first (its tuned LR), as a ladder does."""
    from .ladder import tune_lr
    from ..train.data import load_tokens
    t0 = time.perf_counter()
    executor = executor or InlineExecutor()
    recipes = [baseline, *candidates]
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"recipes must have distinct names, got {', '.join(names)}")
    entries: dict[str, list[LadderEntry]] = {}
    report: dict = {"spec": dataclasses.asdict(spec), "recipe_options": {r.name: r.to_dict() for r in recipes},
                    "lr_rules": {}, "training": {}}
    for recipe in recipes:
        rspec = recipe.apply(spec)
        data = load_tokens(rspec.corpus, rspec.tokenizer)
        if rspec.lr_sweep:
            rspec, report["lr_rules"][recipe.name] = tune_lr(rspec, store, executor, checkpoint_dir, data.vocab_size,
                                                             show_progress=show_progress, log=log, label=recipe.name)
            recipe_spec = dataclasses.replace(spec, lr=rspec.lr, lr_ref_params=rspec.lr_ref_params,
                                              lr_exponent=rspec.lr_exponent, lr_knots=rspec.lr_knots, lr_sweep=False)
        else:
            recipe_spec = spec
        entries[recipe.name] = recipe_entries(recipe_spec, recipe, data.vocab_size)
        log(f"{recipe.name}: {len(entries[recipe.name])} runs over budgets "
            f"{', '.join(f'{b:.2g}' for b in spec.budgets)} FLOPs ({data.tokenizer} tokens, "
            f"{rspec.optimizer}, {rspec.families[0]})")
        report["training"][recipe.name] = train_entries(entries[recipe.name], store, executor, checkpoint_dir,
                                                        show_progress=show_progress, log=log)
    report["compute"] = {name: ladder_compute(e) for name, e in entries.items()}
    runs = {name: [r for r in (store.run(e.run_id) for e in es) if r is not None] for name, es in entries.items()}
    scale, units = loss_scales(spec.corpus, {r.name: r.apply(spec).tokenizer for r in recipes})
    report.update(_finish(runs, baseline.name, scale, units, "n_active", spec.n_bootstrap, spec.seed, out, figures, store))
    report["seconds"] = time.perf_counter() - t0
    return report
