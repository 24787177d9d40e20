"""Studies that design runs, send them to an executor, fit, forecast and verify (the ladder is the main one;
``compare`` pairs ladders of recipes; ``quantize`` and ``distill`` measure and train on a ladder's checkpoints)."""
from .distill import distillation_study
from .ladder import fit_lr_optimum, lr_check, run_ladder, tune_lr
from .quantize import quantization_study

__all__ = ["distillation_study", "fit_lr_optimum", "lr_check", "quantization_study", "run_ladder", "tune_lr"]
