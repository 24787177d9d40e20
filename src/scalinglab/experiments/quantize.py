"""The quantization study: post-training int8/int4 round-to-nearest of every trained checkpoint of a
ladder, measured on each run's own held-out windows (loss increase, memory saved)."""
from __future__ import annotations

from pathlib import Path

from ..store import RunStore


def quantization_study(store: RunStore, checkpoint_dir: str | Path, *, bits=(8, 4), family: str | None = None,
                       eval_tokens: int | None = None) -> dict:
    """Validation-loss increase and memory saved by int8/int4 per-channel RTN, for every finished run
    with a checkpoint. The loss is measured on the run's own fixed held-out windows."""
    from ..train.data import eval_windows, load_tokens
    from ..train.quantize import quantize_model
    from ..train.run import evaluate, load_model_state
    rows = []
    for run in store.runs(status="finished", family=family):
        folder = Path(checkpoint_dir) / run.run_id
        if not folder.exists() or not run.config.get("model"):
            continue
        model, cfg, _ = load_model_state(folder)
        data = load_tokens(cfg.corpus, cfg.tokenizer)
        windows = eval_windows(data.val, cfg.model.seq_len, eval_tokens or cfg.eval_tokens)
        base = evaluate(model, windows, cfg)
        row = {"run_id": run.run_id, "name": run.name, "family": run.family, "n_total": run.n_total,
               "n_active": run.n_active, "loss_fp32": base, "by_bits": {}}
        for b in bits:
            q, mem = quantize_model(model, b)
            ql = evaluate(q, windows, cfg)
            row["by_bits"][str(b)] = {"loss": ql, "loss_increase": ql - base, "relative_increase": ql / base - 1, **mem}
        rows.append(row)
    rows.sort(key=lambda r: r["n_total"])
    return {"method": "symmetric per-output-channel round-to-nearest; tied embedding/head kept in fp32",
            "runs": rows}
