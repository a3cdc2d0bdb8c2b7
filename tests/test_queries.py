"""Feature queries: click / region / box query vectors, cosine maps, thresholds and LERF / DFF relevancy, against
their loop twins, on images and on per-sample point features, and their one-line errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.features.queries import (
    DFF_THRESHOLD,
    box_mask,
    box_query,
    click_query,
    region_query,
    region_query_reference,
    relevancy,
    relevancy_reference,
    similarity_map,
    similarity_map_reference,
    threshold_mask,
)


def unit_image(h=5, w=6, d=4, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(h, w, d, generator=gen, dtype=torch.float64), dim=-1).to(device)


def test_click_query_is_the_pixel_feature(device):
    feats = unit_image(device=device)
    assert torch.allclose(click_query(feats, 2, 3), feats[2, 3])
    raw = 3.0 * feats  # not normalised: the query is
    assert torch.allclose(click_query(raw, 4, 0), feats[4, 0])


@pytest.mark.parametrize("y,x", [(5, 0), (0, 6), (-1, 2), (2, -1)])
def test_click_outside_the_image_is_one_line(y, x):
    with pytest.raises(ConfigError, match="outside the 5x6 image") as info:
        click_query(unit_image(), y, x)
    assert "\n" not in str(info.value)


def test_click_needs_integer_pixels():
    with pytest.raises(ConfigError, match="integer pixel indices"):
        click_query(unit_image(), 1.5, 2)


def test_region_query_matches_reference_and_is_n3f_mean(device):
    feats = unit_image(device=device)
    mask = torch.zeros(5, 6, dtype=torch.bool, device=device)
    mask[1:3, 2:5] = True
    mask[4, 0] = True
    q = region_query(feats, mask)
    assert torch.allclose(q, region_query_reference(feats, mask))
    mean = feats[mask].mean(0)
    assert torch.allclose(q, mean / mean.norm()) and float(q.norm()) == pytest.approx(1.0)
    # Also on per-sample point features of any leading shape.
    points = feats.reshape(3, 10, 4)
    assert torch.allclose(region_query(points, mask.reshape(3, 10)), q)


def test_box_query_equals_the_box_region():
    feats = unit_image()
    mask = box_mask((5, 6), (1, 2, 4, 5))
    assert int(mask.sum()) == 9 and bool(mask[1:4, 2:5].all())
    assert torch.allclose(box_query(feats, (1, 2, 4, 5)), region_query(feats, mask))


def test_region_and_box_errors():
    feats = unit_image()
    with pytest.raises(ConfigError, match="region is empty"):
        region_query(feats, torch.zeros(5, 6, dtype=torch.bool))
    with pytest.raises(ConfigError, match="mask has shape"):
        region_query(feats, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ConfigError, match="boolean"):
        region_query(feats, torch.ones(5, 6))
    for box in [(2, 2, 2, 4), (0, 0, 6, 3), (-1, 0, 2, 2)]:
        with pytest.raises(ConfigError, match="empty or outside the 5x6 image"):
            box_query(feats, box)
    opposite = torch.zeros(1, 2, 2, dtype=torch.float64)
    opposite[0, 0, 0], opposite[0, 1, 0] = 1.0, -1.0
    with pytest.raises(ConfigError, match="mean feature is zero"):
        region_query(opposite, torch.ones(1, 2, dtype=torch.bool))


@pytest.mark.parametrize("leading", [(5, 6), (2, 3, 4), (7,)])
def test_similarity_map_matches_reference(leading, device):
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(*leading, 8, generator=gen, dtype=torch.float64).to(device)
    one = torch.randn(8, generator=gen, dtype=torch.float64).to(device)
    many = torch.randn(3, 8, generator=gen, dtype=torch.float64).to(device)
    s1, sk = similarity_map(feats, one), similarity_map(feats, many)
    assert s1.shape == leading and sk.shape == (*leading, 3)
    assert torch.allclose(s1, similarity_map_reference(feats, one))
    assert torch.allclose(sk, similarity_map_reference(feats, many))
    assert torch.allclose(sk[..., 1], similarity_map(feats, many[1]))
    assert float(s1.abs().max()) <= 1.0 + 1e-12


def test_similarity_of_known_vectors_and_threshold():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    sim = similarity_map(feats, torch.tensor([2.0, 0.0]))  # an un-normalised text embedding
    assert torch.allclose(sim, torch.tensor([1.0, 0.0, 2**-0.5, 0.0]))
    assert threshold_mask(sim, DFF_THRESHOLD).tolist() == [True, False, True, False]
    assert threshold_mask(torch.tensor([0.4, float("nan")]), 0.4).tolist() == [True, False]


@pytest.mark.parametrize("mode", ["pairwise-min", "softmax"])
@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_relevancy_matches_reference(mode, temperature, device):
    gen = torch.Generator().manual_seed(2)
    feats = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64).to(device)
    query = torch.randn(6, generator=gen, dtype=torch.float64).to(device)
    negatives = torch.randn(3, 6, generator=gen, dtype=torch.float64).to(device)
    fast = relevancy(feats, query, negatives, temperature, mode)
    slow = relevancy_reference(feats, query, negatives, temperature, mode)
    assert fast.shape == (4, 5) and torch.allclose(fast, slow, rtol=1e-10)
    assert bool(((fast >= 0) & (fast <= 1)).all())


def test_relevancy_semantics():
    gen = torch.Generator().manual_seed(3)
    query = F.normalize(torch.randn(16, generator=gen), dim=0)
    negatives = F.normalize(torch.randn(4, 16, generator=gen), dim=-1)
    points = torch.stack([query, negatives[0], negatives[2]])
    for mode in ("pairwise-min", "softmax"):
        rel = relevancy(points, query, negatives, mode=mode)
        assert float(rel[0]) > 0.5 and float(rel[1]) < 0.5 and float(rel[2]) < 0.5, (mode, rel)
    feats = torch.randn(50, 16, generator=gen)
    lerf, dff = relevancy(feats, query, negatives), relevancy(feats, query, negatives, mode="softmax")
    assert bool((dff <= lerf + 1e-7).all()) and float((lerf - dff).max()) > 1e-3  # one softmax over all ≤ each pair
    one = negatives[:1]
    assert torch.allclose(relevancy(feats, query, one), relevancy(feats, query, one, mode="softmax"), atol=1e-6)


def test_relevancy_and_similarity_errors():
    feats = unit_image()
    with pytest.raises(ConfigError, match="to match the 4-dim features"):
        similarity_map(feats, torch.zeros(5))
    with pytest.raises(ConfigError, match="at least one negative"):
        relevancy(feats, torch.ones(4), torch.zeros(0, 4))
    with pytest.raises(ConfigError, match="negatives has shape"):
        relevancy(feats, torch.ones(4), torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="temperature"):
        relevancy(feats, torch.ones(4), torch.ones(1, 4), temperature=0.0)
    with pytest.raises(ConfigError, match="unknown mode"):
        relevancy(feats, torch.ones(4), torch.ones(1, 4), mode="max")
    with pytest.raises(ConfigError, match="one \\(d,\\) embedding"):
        relevancy(feats, torch.ones(2, 4), torch.ones(1, 4))
