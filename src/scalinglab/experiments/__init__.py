"""Studies that design runs, send them to an executor, fit, forecast and verify (the ladder is the main one)."""
from .ladder import fit_lr_optimum, lr_check, run_ladder, tune_lr

__all__ = ["fit_lr_optimum", "lr_check", "run_ladder", "tune_lr"]
