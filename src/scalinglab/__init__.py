"""scalinglab: measure, fit and forecast scaling laws; plan compute; train model ladders.

The public API, re-exported here; the CLI (``scalinglab``) is a thin layer over it.
"""
from . import accounting
from .analysis import Selection, fit_runs, save_fits
from .importers import ImportFormatError, export_runs, import_runs, parse_runs
from .laws import (ChinchillaLaw, DataConstrainedLaw, EnvelopeApproach, FitError, IsoFLOPApproach, KaplanLaw, PowerLaw,
                   law_from_dict, preset)
from .plan import (HARDWARE, gpu_hours_to_flops, plan_compute, plan_data_constrained, plan_for_params,
                   plan_inference_aware, plan_target_loss)
from .store import Run, RunStore, config_hash

__version__ = "0.1.0"

__all__ = [
    "HARDWARE", "ChinchillaLaw", "DataConstrainedLaw", "EnvelopeApproach", "FitError", "ImportFormatError",
    "IsoFLOPApproach", "KaplanLaw", "PowerLaw", "Run", "RunStore", "Selection", "accounting", "config_hash",
    "export_runs", "fit_runs", "gpu_hours_to_flops", "import_runs", "law_from_dict", "parse_runs", "plan_compute",
    "plan_data_constrained", "plan_for_params", "plan_inference_aware", "plan_target_loss", "preset", "save_fits",
]
