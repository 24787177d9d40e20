"""Test-time compute: repeated sampling, verifiers, and test-time scaling laws."""
from .distribution import SuccessDistribution, forecast_backtest, subsample_counts
from .estimators import best_of_n, coverage_curve, majority_at_k, pass_at_k
from .laws import CoverageLaw
from .tasks import Task
from .verifier import accuracy_ceiling, accuracy_vs_attempts, expected_reward, optimal_attempts, simulate

__all__ = ["CoverageLaw", "SuccessDistribution", "Task", "accuracy_ceiling", "accuracy_vs_attempts", "best_of_n", "coverage_curve",
           "expected_reward", "forecast_backtest", "majority_at_k", "optimal_attempts", "pass_at_k", "simulate",
           "subsample_counts"]
