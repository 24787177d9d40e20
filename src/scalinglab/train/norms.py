"""RMSNorm as used by every sequence mixer and MLP of the lab's models: a hand-written autograd Function, the
gain-free unit form, and the fold of a gain into the linear map that reads the norm (:func:`scaled`)."""
from __future__ import annotations

import torch
import torch.nn as nn


def _rms_inverse(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(mean(x^2) + eps)`` over the last dimension, kept for broadcasting."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()


class _RMSNormFn(torch.autograd.Function):
    """RMSNorm with a hand-written backward: about half the element-wise kernels of autograd through
    ``F.rms_norm`` (which CPU runs as pow/mean/rsqrt/mul), the same values (tests/test_model.py)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        rinv = _rms_inverse(x, eps)
        xhat = x * rinv
        ctx.save_for_backward(xhat, rinv, weight)
        return xhat * weight

    @staticmethod
    def backward(ctx, grad):
        # d/dx of w * x * rinv: rinv * (g w - xhat * mean(g w xhat)), written in place
        xhat, rinv, weight = ctx.saved_tensors
        g_xhat = grad * weight
        coef = torch.linalg.vecdot(g_xhat, xhat).unsqueeze_(-1).mul_(rinv).div_(-xhat.shape[-1])
        grad_x = g_xhat.mul_(rinv).addcmul_(xhat, coef)
        grad_w = (grad * xhat).flatten(0, -2).sum(0) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None


class _UnitRMSNormFn(torch.autograd.Function):
    """``x / rms(x)`` without the gain: its backward is ``rinv * (g - xhat * mean(g xhat))`` in three
    kernels, with no reduction over tokens for a gain's gradient."""

    @staticmethod
    def forward(ctx, x, eps):
        rinv = _rms_inverse(x, eps)
        xhat = x * rinv
        ctx.save_for_backward(xhat, rinv)
        return xhat

    @staticmethod
    def backward(ctx, grad):
        xhat, rinv = ctx.saved_tensors
        coef = torch.linalg.vecdot(grad, xhat).unsqueeze_(-1).div_(-xhat.shape[-1])
        return torch.addcmul(grad, xhat, coef).mul_(rinv), None


class RMSNorm(nn.Module):
    """RMSNorm with a gain. A layer that reads the norm only through a linear map takes :meth:`unit` and
    folds the gain into that map's weight (``W diag(g)``, :func:`scaled`): the same function, and at
    small widths the cheaper one on CPU (the gain's gradient comes from a (out x D) product instead of a
    reduction over every token)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return _RMSNormFn.apply(x_BTD, self.weight, self.eps)

    def unit(self, x_BTD: torch.Tensor) -> torch.Tensor:
        """``x / rms(x)``, the gain left to the consumer."""
        return _UnitRMSNormFn.apply(x_BTD, self.eps)


def scaled(weight_OD: torch.Tensor, gain_D: torch.Tensor | None) -> torch.Tensor:
    """A linear map's weight with an RMSNorm gain folded in: ``linear(xhat * g, W) == linear(xhat, W * g)``."""
    return weight_OD if gain_D is None else weight_OD * gain_D
