"""Batched shaping loss vs its loop twin; positive rules; threshold schedule."""

from __future__ import annotations

import torch

from jacobinerf_ns.shaping import (
    abs_cosine_matrix,
    adapt_threshold,
    info_nce_loss,
    info_nce_loss_reference,
    norm_loss,
    positive_mask_knn,
    positive_mask_threshold,
    shaping_stats,
)


def _data(n=13, m=6, d=5, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(n, m, dtype=torch.float64, generator=g).to(device).requires_grad_()
    f = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64, generator=g), dim=1).to(device)
    return J, f


def test_info_nce_matches_reference_values_and_gradients(device):
    J, f = _data(device=device)
    pos = positive_mask_threshold(f, 0.2)
    pos[3] = False  # a ray without positives is skipped
    for tau in (1.0, 0.3):
        a = info_nce_loss(J, pos, tau)
        b = info_nce_loss_reference(J, pos, tau)
        assert torch.allclose(a, b, rtol=1e-12)
        ga = torch.autograd.grad(a, J)[0]
        gb = torch.autograd.grad(b, J)[0]
        assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-12)


def test_info_nce_without_any_positive_is_zero_with_graph():
    J, _ = _data()
    loss = info_nce_loss(J, torch.zeros(13, 13, dtype=torch.bool))
    assert float(loss) == 0.0 and loss.requires_grad


def test_info_nce_decreases_when_positives_align():
    J, f = _data()
    pos = positive_mask_knn(f, 2)
    aligned = J.detach().clone()
    i, j = torch.nonzero(pos)[0]
    aligned[j] = aligned[i] * 3.0
    assert info_nce_loss(aligned, pos) < info_nce_loss(J.detach(), pos)


def test_positive_rules_match_loops():
    _, f = _data(n=9)
    sim = f @ f.T
    thr = positive_mask_threshold(f, 0.1)
    knn = positive_mask_knn(f, 3)
    for i in range(9):
        assert not thr[i, i] and not knn[i, i]
        for j in range(9):
            if i != j:
                assert bool(thr[i, j]) == bool(sim[i, j] > 0.1)
        others = sorted((j for j in range(9) if j != i), key=lambda j: -float(sim[i, j]))[:3]
        assert set(torch.nonzero(knn[i]).flatten().tolist()) == set(others)


def test_threshold_schedule():
    assert adapt_threshold(0.8, 0.01) == 0.799
    assert adapt_threshold(0.8, 0.5) == 0.801
    assert adapt_threshold(0.8, 0.10) == 0.8
    assert adapt_threshold(0.5, 0.0) == 0.5 and adapt_threshold(0.9, 1.0) == 0.9


def test_norm_loss_and_stats():
    J = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]])
    assert abs(float(norm_loss(J)) - (4.0**2) / 3) < 1e-6
    pos = torch.zeros(3, 3, dtype=torch.bool)
    pos[1, 2] = pos[2, 1] = True
    stats = shaping_stats(J, pos)
    cos = abs_cosine_matrix(J)
    assert abs(stats.positive_fraction - 2 / 6) < 1e-9
    assert abs(stats.cos_positive - float(cos[1, 2])) < 1e-6
    assert abs(stats.cos_negative - float((cos[0, 1] + cos[0, 2]) / 2)) < 1e-6
