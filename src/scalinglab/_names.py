"""Names the command line shows before any numerical work: law and preset names, the hold-out
grammar, and the fit error. Nothing heavy is imported here, so ``scalinglab --help`` stays fast."""
from __future__ import annotations

ND_FORM_NAMES = ("chinchilla", "overtrain", "kaplan-nd", "interaction")
LAW_CHOICES = ("auto", "chinchilla", "overtrain", "kaplan-nd", "interaction", "approach1", "approach2", "kaplan-n",
               "kaplan-d", "kaplan-c", "data-constrained")
DEFAULT_LAWS = ("chinchilla", "approach2")
BACKTEST_LAWS = ND_FORM_NAMES + ("kaplan-n", "kaplan-d", "kaplan-c")
HOLDOUT_HELP = ("'none', 'largest' (the largest-compute budget), or conditions on N, D, C, loss, budget (>, >=, <, <=, "
                "==, !=; numbers like 1e21, 400M) and name, family (== or ~ for 'contains', case-insensitive), "
                "joined with 'and' / 'or' ('and' binds first): 'C > 1e21', 'N >= 4e8 and D > 1e11', 'name ~ 7b'")

PRESET_SOURCES = {
    "chinchilla-2022": "Hoffmann et al. 2022, arXiv:2203.15556, Approach 3",
    "epoch-2024": "Besiroglu et al. 2024, arXiv:2404.10102 (Chinchilla replication)",
    "kaplan-2020": "Kaplan et al. 2020, arXiv:2001.08361",
    "muennighoff-2023": "Muennighoff et al. 2023, arXiv:2305.16264 (data-constrained)",
}


class FitError(RuntimeError):
    """A fit that cannot be trusted: too few runs, no convergence, parameters at their bounds.

    Attributes:
        diagnostics: what was found (counts, objective, which parameters hit which bound...).
    """

    def __init__(self, message: str, diagnostics: dict | None = None):
        super().__init__(message)
        self.diagnostics = diagnostics or {}
