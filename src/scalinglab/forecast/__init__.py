"""Capabilities across scale: task metrics, two-step downstream forecasts, release gates."""
from .gates import EXIT_CODES, PolicyError, decide, load_policy
from .metrics import METRICS, brier_score, edit_distance, mean_log_likelihood
from .twostep import SigmoidFit, TwoStepForecast, backtest, sigmoid

__all__ = ["EXIT_CODES", "METRICS", "PolicyError", "SigmoidFit", "TwoStepForecast", "backtest", "brier_score", "decide",
           "edit_distance", "load_policy", "mean_log_likelihood", "sigmoid"]
