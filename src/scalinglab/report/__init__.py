"""Figures and reports."""
from .figures import fit_figures

__all__ = ["fit_figures"]
