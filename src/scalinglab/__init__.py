"""scalinglab: measure, fit and forecast scaling laws; plan compute; train model ladders.

The public API, re-exported here; the CLI (``scalinglab``) is a thin layer over it. Names are imported
on first use (PEP 562 module ``__getattr__``), so ``import scalinglab`` and the light commands stay fast.
"""
import importlib

__version__ = "0.1.0"

_SOURCES = {
    "accounting": ".accounting",
    "Selection": ".analysis", "fit_runs": ".analysis", "save_fits": ".analysis",
    "ImportFormatError": ".importers", "export_runs": ".importers", "import_runs": ".importers",
    "parse_runs": ".importers",
    "ChinchillaLaw": ".laws", "DataConstrainedLaw": ".laws", "EnvelopeApproach": ".laws", "FitError": ".laws",
    "IsoFLOPApproach": ".laws", "KaplanLaw": ".laws", "PowerLaw": ".laws", "law_from_dict": ".laws",
    "preset": ".laws",
    "HARDWARE": ".plan", "gpu_hours_to_flops": ".plan", "plan_compute": ".plan", "plan_data_constrained": ".plan",
    "plan_for_params": ".plan", "plan_inference_aware": ".plan", "plan_target_loss": ".plan",
    "Run": ".store", "RunStore": ".store", "config_hash": ".store",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_SOURCES[name], __name__)
    value = module if name == "accounting" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_SOURCES))
