"""Scaling-law families, the fitting engine, Approaches 1-3 and published presets."""
from ._base import FitError, percentile_interval
from .approaches import EnvelopeApproach, FrontierFit, IsoFLOPApproach, group_budgets
from .data_constrained import DataConstrainedLaw, effective_data, effective_params
from .forms import InteractionLaw, KaplanNDLaw, OvertrainLaw
from .parametric import ChinchillaLaw, PowerLaw, chinchilla_grid
from .presets import PRESET_SOURCES, KaplanLaw, preset

LAWS = {"chinchilla": ChinchillaLaw, "power-law": PowerLaw, "data-constrained": DataConstrainedLaw,
        "overtrain": OvertrainLaw, "kaplan-nd": KaplanNDLaw, "interaction": InteractionLaw}


def law_from_dict(state: dict):
    """Rebuild a fitted law from :meth:`to_dict` output (as stored in the run store)."""
    try:
        return LAWS[state["law"]].from_dict(state)
    except KeyError:
        raise ValueError(f"cannot rebuild law {state.get('law')!r}; known: {', '.join(LAWS)}") from None


__all__ = ["ChinchillaLaw", "DataConstrainedLaw", "EnvelopeApproach", "FitError", "FrontierFit", "IsoFLOPApproach",
           "InteractionLaw", "KaplanLaw", "KaplanNDLaw", "OvertrainLaw", "LAWS", "PRESET_SOURCES", "PowerLaw", "chinchilla_grid", "effective_data", "effective_params",
           "group_budgets", "law_from_dict", "percentile_interval", "preset"]
