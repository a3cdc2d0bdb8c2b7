"""Closed-form per-ray Jacobians vs one autograd.grad per ray (float64), values and gradients of losses on them."""

from __future__ import annotations

import pytest
import torch

from jacobinerf_ns.jacobian import (
    diagonal_rows,
    effective_weights,
    jacobian_autograd_reference,
    mean_rgb_jacobian,
    per_channel_jacobian,
)

R, S, K = 7, 11, 9


class _Scene(torch.nn.Module):
    """A random 'field': hidden features and densities from positions, weights by alpha compositing."""

    def __init__(self, seed: int, device: torch.device | str = "cpu"):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.pos = torch.randn(R, S, 3, generator=g, dtype=torch.float64).to(device)
        self.deltas = (torch.rand(R, S, 1, generator=g, dtype=torch.float64) * 0.3).to(device)
        self.hidden_net = torch.nn.Sequential(torch.nn.Linear(3, K), torch.nn.Tanh(), torch.nn.Linear(K, K))
        self.hidden_net = self.hidden_net.double().to(device)
        self.density_net = torch.nn.Linear(3, 1).double().to(device)
        self.W = torch.nn.Parameter(torch.randn(3, K, generator=g, dtype=torch.float64).to(device))
        self.b = torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64).to(device))

    def internals(self):
        h = torch.relu(self.hidden_net(self.pos))
        sigma = torch.nn.functional.softplus(self.density_net(self.pos)) * 3
        alpha = 1 - torch.exp(-sigma * self.deltas)
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
        return alpha * trans, h

    def colors(self, W, last_sample: bool):
        weights, h = self.internals()
        rgb = torch.sigmoid(h @ W.T + self.b)
        out = (weights * rgb).sum(dim=1)
        if last_sample:
            out = out + (1 - weights.sum(dim=1)) * rgb[:, -1]
        return out

    def closed(self, last_sample: bool):
        weights, h = self.internals()
        return per_channel_jacobian(weights, h @ self.W.T + self.b, h, background_last_sample=last_sample)


@pytest.mark.parametrize("last_sample", [False, True])
def test_closed_form_matches_autograd(last_sample, device):
    scene = _Scene(0, device)
    ref = jacobian_autograd_reference(lambda W: scene.colors(W, last_sample), scene.W)
    # only row c of dC_c/dW is non-zero
    off = ref.clone()
    for c in range(3):
        off[:, c, c] = 0
    assert off.abs().max() == 0
    closed = scene.closed(last_sample)
    ref_diag = diagonal_rows(ref)
    rel = (closed - ref_diag).abs().max() / ref_diag.abs().max()
    assert rel <= 1e-5
    assert rel < 1e-12  # float64: the closed form is exact


def test_mean_rgb_jacobian_is_gradient_of_channel_mean():
    scene = _Scene(1)
    (g,) = torch.autograd.grad(scene.colors(scene.W, False).mean(dim=1).sum(), scene.W)  # sum over rays of dS/dW
    closed = mean_rgb_jacobian(scene.closed(False))
    assert torch.allclose(closed.sum(dim=0), g.flatten(), rtol=1e-10, atol=1e-12)
    assert closed.shape == (R, 3 * K)


def test_gradients_of_a_loss_on_jacobians_agree():
    """First-order autograd through the closed form == double backward through the reference."""
    scene = _Scene(2)
    params = list(scene.parameters())
    target = torch.randn(R, 3, K, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def loss(J):
        unit = J.flatten(1) / J.flatten(1).norm(dim=1, keepdim=True)
        return (unit @ unit.T).abs().sum() + ((J - target) ** 2).sum()

    g_closed = torch.autograd.grad(loss(scene.closed(True)), params)
    ref = diagonal_rows(jacobian_autograd_reference(lambda W: scene.colors(W, True), scene.W, create_graph=True))
    g_ref = torch.autograd.grad(loss(ref), params)
    for a, b in zip(g_closed, g_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


class _FirstOrderOnly(torch.autograd.Function):
    """Like a tiny-cuda-nn encoding: a backward that cannot itself be differentiated."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 2

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return grad * 2


def test_closed_form_needs_no_double_backward():
    """Through an encoding whose backward is not differentiable (like tiny-cuda-nn), the closed form trains."""
    scene = _Scene(3)
    weights, h = scene.internals()
    h = _FirstOrderOnly.apply(h)
    J = per_channel_jacobian(weights, h @ scene.W.T + scene.b, h)
    J.pow(2).sum().backward()
    for p in (scene.density_net.weight, scene.hidden_net[0].weight, scene.W, scene.b):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_effective_weights_moves_the_remainder_to_the_last_sample():
    w = torch.tensor([[[0.2], [0.3], [0.1]]])
    out = effective_weights(w, background_last_sample=True)
    assert torch.allclose(out.sum(dim=-2), torch.ones(1, 1))
    assert torch.allclose(out[0, :2], w[0, :2])
    assert torch.equal(effective_weights(w, False), w)
