"""Scaling without training: public model tables, trends over time, observational scaling laws, saturation.

* :mod:`.tables` -- model tables (and lm-evaluation-harness results) into :class:`ModelTable`; a bundled example.
* :mod:`.trends` -- growth rates and doubling times, rolling-origin backtests, the slope-change test.
* :mod:`.obslaws` -- observational scaling laws (Ruan, Maddison and Hashimoto 2024) and their backtests.
* :mod:`.saturation` -- each benchmark's ceiling and headroom from one logistic (IRT) model across benchmarks.
"""
from .obslaws import ObservationalLaw, backtest, impute_pca, leaning
from .saturation import saturation
from .tables import ModelTable, decimal_year, example_path, parse_harness_models, parse_model_table
from .trends import fit_trend, frontier_mask, rolling_origin, slope_change_pvalues, slope_change_test, trend_report

__all__ = ["ModelTable", "ObservationalLaw", "backtest", "impute_pca", "leaning", "saturation", "decimal_year", "example_path", "fit_trend", "frontier_mask", "parse_harness_models",
           "parse_model_table", "rolling_origin", "slope_change_pvalues", "slope_change_test", "trend_report"]
