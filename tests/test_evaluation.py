"""Evaluation helpers against loops."""

from __future__ import annotations

import torch

from jacobinerf_ns.evaluation import jacobian_cosine_by_relation, sample_labelled_pixels


def test_cosine_by_relation_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    J = torch.randn(9, 5, generator=g, dtype=torch.float64)
    cls = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 0])
    inst = torch.tensor([1, 1, 2, 3, 3, 4, 5, 5, 2])
    out = jacobian_cosine_by_relation(J, cls, inst)
    groups = {"cos_same_instance": [], "cos_same_class": [], "cos_diff_class": []}
    for i in range(9):
        for j in range(9):
            if i == j:
                continue
            c = abs(float(torch.dot(J[i], J[j]) / (J[i].norm() * J[j].norm())))
            if cls[i] != cls[j]:
                groups["cos_diff_class"].append(c)
            elif inst[i] == inst[j]:
                groups["cos_same_instance"].append(c)
            else:
                groups["cos_same_class"].append(c)
    for key, values in groups.items():
        assert abs(out[key] - sum(values) / len(values)) < 1e-9


def test_sample_labelled_pixels_skips_void_and_is_seeded():
    sem = torch.full((2, 4, 5), -1)
    sem[0, 1, 2] = 3
    sem[1, 3, 4] = 0
    sem[1, 0, 0] = 1
    px = sample_labelled_pixels(sem, 10, seed=1)
    assert sorted(map(tuple, px.tolist())) == [(0, 1, 2), (1, 0, 0), (1, 3, 4)]
    assert torch.equal(sample_labelled_pixels(sem, 2, seed=4), sample_labelled_pixels(sem, 2, seed=4))
