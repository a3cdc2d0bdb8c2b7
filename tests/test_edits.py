"""Per-sample edit kernels (extraction, deletion, recolouring, channel permutation) against their loop twins, with
boolean and soft matches, nerfstudio's field-output shapes, purity and one-line errors."""

from __future__ import annotations

import pytest
import torch

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.features.edits import (
    delete_density,
    delete_density_reference,
    extract_density,
    extract_density_reference,
    permute_channels,
    permute_channels_reference,
    recolor,
    recolor_reference,
)


def samples(seed=0, device="cpu", rays=4, steps=6):
    gen = torch.Generator().manual_seed(seed)
    density = (torch.rand(rays, steps, 1, generator=gen, dtype=torch.float64) * 5).to(device)
    rgb = torch.rand(rays, steps, 3, generator=gen, dtype=torch.float64).to(device)
    score = torch.rand(rays, steps, generator=gen, dtype=torch.float64).to(device)
    return density, rgb, score


@pytest.mark.parametrize("trailing", [False, True])
def test_density_edits_match_reference(trailing, device):
    density, _, score = samples(device=device)
    s = score[..., None] if trailing else score
    for fast, slow in ((extract_density, extract_density_reference), (delete_density, delete_density_reference)):
        out = fast(density, s)
        assert out.shape == density.shape
        assert torch.allclose(out, slow(density, s))
    # Soft extraction and deletion split the density exactly.
    assert torch.allclose(extract_density(density, s) + delete_density(density, s), density)


def test_density_edits_boolean_match(device):
    density, _, score = samples(device=device)
    match = score > 0.5
    kept, removed = extract_density(density, match), delete_density(density, match)
    assert torch.equal(kept[match], density[match]) and bool((kept[~match] == 0).all())
    assert torch.equal(removed[~match], density[~match]) and bool((removed[match] == 0).all())
    assert torch.allclose(kept, extract_density_reference(density, match))
    assert torch.allclose(removed, delete_density_reference(density, match))
    flat = density[..., 0]  # densities without the trailing channel work too
    assert torch.equal(extract_density(flat, match), kept[..., 0])


def test_recolor_matches_reference_and_dff_blend(device):
    _, rgb, score = samples(seed=1, device=device)
    target = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64, device=device)
    out = recolor(rgb, score, target)
    assert torch.allclose(out, recolor_reference(rgb, score, target))
    assert torch.allclose(out, rgb * (1 - score[..., None]) + target * score[..., None])
    per_sample = torch.rand_like(rgb)
    assert torch.allclose(recolor(rgb, score, per_sample), recolor_reference(rgb, score, per_sample))
    match = score > 0.5
    hard = recolor(rgb, match, target)
    assert torch.equal(hard[match], target.expand_as(rgb)[match]) and torch.equal(hard[~match], rgb[~match])


def test_permute_channels_matches_reference(device):
    _, rgb, score = samples(seed=2, device=device)
    for perm in [(2, 0, 1), (1, 0, 2), (0, 1, 2)]:
        out = permute_channels(rgb, score, perm)
        assert torch.allclose(out, permute_channels_reference(rgb, score, perm))
    ones = torch.ones_like(score)
    assert torch.equal(permute_channels(rgb, ones, (2, 0, 1)), rgb[..., [2, 0, 1]])
    assert torch.equal(permute_channels(rgb, torch.zeros_like(score), (2, 0, 1)), rgb)
    match = score > 0.3
    hard = permute_channels(rgb, match, (1, 2, 0))
    assert torch.equal(hard[match], rgb[match][:, [1, 2, 0]]) and torch.equal(hard[~match], rgb[~match])


def test_edits_are_pure_and_differentiable():
    density, rgb, score = samples(seed=3)
    before = (density.clone(), rgb.clone(), score.clone())
    density.requires_grad_(True)
    rgb.requires_grad_(True)
    total = extract_density(density, score).sum() + recolor(rgb, score, torch.zeros(3)).sum()
    total.backward()
    assert torch.allclose(density.grad[..., 0], score) and torch.allclose(
        rgb.grad, (1 - score)[..., None].expand(-1, -1, 3)
    )
    assert torch.equal(density.detach(), before[0]) and torch.equal(rgb.detach(), before[1])
    assert torch.equal(score, before[2])


def test_edit_errors_are_one_line():
    density, rgb, score = samples()
    cases = [
        (lambda: extract_density(density, score[:, :5]), "match has shape"),
        (lambda: delete_density(density, score * 2), r"scores must lie in \[0, 1\]"),
        (lambda: delete_density(density, torch.full_like(score, float("nan"))), r"scores must lie in \[0, 1\]"),
        (lambda: extract_density(density, (score > 0.5).long()), "boolean or a float score"),
        (lambda: recolor(rgb, score, torch.zeros(4)), "target_rgb has shape"),
        (lambda: recolor(rgb, score, torch.zeros(5, 3)), "target_rgb has shape"),
        (lambda: recolor(density, score, torch.zeros(3)), r"colours must be a float \(\.\.\., 3\)"),
        (lambda: permute_channels(rgb, score, (0, 0, 1)), "permutation of"),
    ]
    for call, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
