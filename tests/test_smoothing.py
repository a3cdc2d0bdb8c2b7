"""Smoothness regularisers on rendered feature patches: kernels vs loop twins (value and gradient, float64), and
what each claims (TV on constant / noisy patches, bilateral edge-awareness, mask loss inside / across masks)."""

from __future__ import annotations

import math

import pytest
import torch

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.features.smoothing import (
    bilateral_loss,
    bilateral_loss_reference,
    bilateral_offsets,
    mask_loss,
    mask_loss_reference,
    tv_loss,
    tv_loss_reference,
)


def rand(*shape, seed=0, device="cpu", grad=True):
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=gen, dtype=torch.float64).to(device)
    return t.requires_grad_(grad)


def grad_of(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x, *args, **kwargs)
    (g,) = torch.autograd.grad(value, x)
    return value.detach(), g


def assert_twins(fast, slow, x, *args, **kwargs):
    v_fast, g_fast = grad_of(fast, x, *args, **kwargs)
    v_slow, g_slow = grad_of(slow, x, *args, **kwargs)
    assert torch.allclose(v_fast, v_slow, rtol=1e-10, atol=1e-12), (v_fast, v_slow)
    assert torch.allclose(g_fast, g_slow, rtol=1e-9, atol=1e-12), (g_fast - g_slow).abs().max()
    assert g_fast.abs().max() > 0  # the kernel really passes gradient to the rendered features


# ---------------------------------------------------------------------------------------------------------- TV


@pytest.mark.parametrize("shape", [(2, 4, 5, 3), (1, 1, 6, 2), (3, 5, 1, 2)])
def test_tv_matches_reference(shape, device):
    assert_twins(tv_loss, tv_loss_reference, rand(*shape, device=device))


def test_tv_gradcheck():
    assert torch.autograd.gradcheck(tv_loss, (rand(2, 3, 4, 2),))


def test_tv_zero_on_constant_and_grows_with_noise():
    gen = torch.Generator().manual_seed(1)
    constant = torch.randn(1, 1, 1, 8, generator=gen).expand(4, 64, 64, 8).contiguous()
    assert float(tv_loss(constant)) == 0.0
    noise = torch.randn(4, 64, 64, 8, generator=gen)
    values = [float(tv_loss(constant + s * noise)) for s in (0.01, 0.1, 0.5)]
    assert 0 < values[0] < values[1] < values[2]
    # i.i.d. noise of std s: E|ΔF| = 2s/√π per channel, 8 channels, two directions.
    expected = 2 * 8 * 2 * 0.1 / math.sqrt(math.pi)
    assert values[1] == pytest.approx(expected, rel=0.02)


def test_tv_single_pixel_is_zero_with_graph():
    x = rand(3, 1, 1, 4)
    loss = tv_loss(x)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


# --------------------------------------------------------------------------------------------------- bilateral


@pytest.mark.parametrize("radius,sigma_rgb,sigma_xy", [(1, 0.3, 1.0), (2, 0.5, 1.5), (3, 1.0, 0.7)])
def test_bilateral_matches_reference(radius, sigma_rgb, sigma_xy, device):
    feats = rand(2, 4, 5, 3, seed=2, device=device)
    rgb = torch.rand(2, 4, 5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(device)
    assert_twins(bilateral_loss, bilateral_loss_reference, feats, rgb, sigma_rgb, sigma_xy, radius)


def test_bilateral_offsets_are_the_half_window():
    offsets = bilateral_offsets(2)
    assert len(offsets) == (5 * 5 - 1) // 2 and len(set(offsets)) == len(offsets)
    full = set(offsets) | {(-dy, -dx) for dy, dx in offsets}
    assert full == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)} - {(0, 0)}


def test_bilateral_gradcheck_and_no_gradient_to_rgb():
    feats = rand(1, 3, 4, 2, seed=4)
    rgb = torch.rand(1, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: bilateral_loss(f, rgb, 0.3, 1.0, 1), (feats,))
    bilateral_loss(feats, rgb, 0.3, 1.0, 1).backward()
    assert rgb.grad is None and feats.grad.abs().max() > 0


def test_bilateral_is_edge_aware():
    """A feature jump inside a flat-colour region costs far more than the same jump on a colour edge."""
    p = 8
    rgb = torch.zeros(1, p, p, 3)
    rgb[..., : p // 2, 0] = 1.0  # left half red
    rgb[..., p // 2 :, 2] = 1.0  # right half blue
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])

    def jump_at(col: int) -> torch.Tensor:
        feats = a.expand(1, p, p, 2).clone()
        feats[:, :, col:] = b
        return feats

    on_edge, inside = jump_at(p // 2), jump_at(p // 4)
    loss_edge = float(bilateral_loss(on_edge, rgb, 0.2, 2.0, 2))
    loss_inside = float(bilateral_loss(inside, rgb, 0.2, 2.0, 2))
    assert loss_inside > 100 * loss_edge > 0
    # TV cannot tell them apart: the difference comes from the RGB guide.
    assert float(tv_loss(on_edge)) == pytest.approx(float(tv_loss(inside)))
    flat = a.expand(1, p, p, 2)
    assert float(bilateral_loss(flat, rgb, 0.2, 2.0, 2)) == 0.0


def test_bilateral_underflowing_weights_give_zero_not_nan():
    feats = rand(1, 3, 3, 2, seed=5).float().detach().requires_grad_(True)
    rgb = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(5)) * 1e3  # every weight underflows to 0
    value = bilateral_loss(feats, rgb, 1e-3, 1e-3, 1)
    value.backward()
    assert float(value.detach()) == 0.0 and bool(torch.isfinite(feats.grad).all())


def test_bilateral_bad_input():
    feats = rand(1, 3, 3, 2)
    with pytest.raises(ConfigError, match="rgb patch has shape"):
        bilateral_loss(feats, torch.rand(1, 3, 4, 3), 0.1, 1.0, 1)
    with pytest.raises(ConfigError, match="radius"):
        bilateral_loss(feats, torch.rand(1, 3, 3, 3), 0.1, 1.0, 0)
    with pytest.raises(ConfigError, match="sigma"):
        bilateral_loss(feats, torch.rand(1, 3, 3, 3), 0.0, 1.0, 1)


# -------------------------------------------------------------------------------------------------------- masks


def random_masks(n, p, q, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 4, (n, p, q), generator=gen).to(device)


@pytest.mark.parametrize("min_area", [1, 3, 6])
def test_mask_loss_matches_reference(min_area, device):
    feats = rand(3, 4, 5, 3, seed=6, device=device)
    masks = random_masks(3, 4, 5, seed=7, device=device)
    assert_twins(mask_loss, mask_loss_reference, feats, masks, min_area)


def test_mask_loss_min_area_really_drops_masks():
    feats = rand(3, 4, 5, 3, seed=6, grad=False)
    masks = random_masks(3, 4, 5, seed=7)
    counts = [int((masks[k] == m).sum()) for k in range(3) for m in range(4)]
    assert min(c for c in counts if c) < 6 < max(counts)  # the parametrised areas above split the masks
    assert float(mask_loss(feats, masks, 1)) != pytest.approx(float(mask_loss(feats, masks, 6)))


def test_mask_loss_gradient_equals_detached_mean():
    feats = rand(2, 4, 4, 3, seed=8)
    masks = random_masks(2, 4, 4, seed=9)
    _, g = grad_of(mask_loss, feats, masks, 1)
    # Closed form 2 (F − μ_m) / N with μ_m detached: the gradient through the mean vanishes.
    expected = torch.zeros_like(feats)
    count = int((masks >= 0).sum())
    for k in range(2):
        for m in masks[k].unique().tolist():
            if m < 0:
                continue
            sel = masks[k] == m
            mu = feats[k][sel].detach().mean(0)
            expected[k][sel] = 2 * (feats[k][sel].detach() - mu) / count
    assert torch.allclose(g, expected, atol=1e-12)


def test_mask_loss_zero_when_constant_per_mask():
    masks = torch.full((2, 6, 6), -1)
    masks[:, :, :3] = 0
    masks[:, :, 3:] = 1
    masks[1, :2] = 2
    colours = torch.randn(3, 5, dtype=torch.float64)
    feats = colours[masks.clamp(min=0)]  # constant in each mask, different across masks
    feats[masks < 0] = torch.randn(int((masks < 0).sum()), 5, dtype=torch.float64)
    assert float(mask_loss(feats, masks, 4)) == pytest.approx(0.0, abs=1e-14)
    noisy = feats + 0.1 * torch.randn_like(feats)
    assert float(mask_loss(noisy, masks, 4)) > 1e-3
    # No pull across a border: moving one mask's features leaves the loss at 0.
    shifted = feats.clone()
    shifted[masks == 1] += 3.0
    assert float(mask_loss(shifted, masks, 4)) == pytest.approx(0.0, abs=1e-12)


def test_mask_loss_ignores_small_masks_and_none_is_zero_with_graph():
    masks = torch.full((1, 4, 4), -1)
    masks[0, 0, :2] = 5  # a 2-pixel mask
    feats = rand(1, 4, 4, 3, seed=10)
    assert float(mask_loss(feats, masks, 2).detach()) > 0
    loss = mask_loss(feats, masks, 3)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(feats.grad, torch.zeros_like(feats))
    empty = mask_loss(feats, torch.full((1, 4, 4), -1), 1)
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_mask_loss_same_id_in_two_patches_is_two_masks():
    feats = torch.zeros(2, 2, 2, 1, dtype=torch.float64)
    feats[1] = 1.0  # patch 1 constant at 1, patch 0 constant at 0, both labelled 0
    assert float(mask_loss(feats, torch.zeros(2, 2, 2, dtype=torch.long), 1)) == 0.0


def test_mask_loss_bad_input():
    feats = rand(1, 3, 3, 2)
    with pytest.raises(ConfigError, match="masks have shape"):
        mask_loss(feats, torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ConfigError, match="integer"):
        mask_loss(feats, torch.zeros(1, 3, 3))
    with pytest.raises(ConfigError, match="min_area"):
        mask_loss(feats, torch.zeros(1, 3, 3, dtype=torch.long), 0)
    with pytest.raises(ConfigError, match="rendered features"):
        tv_loss(torch.zeros(3, 3, 2))
