"""Average precision (vs scikit-learn and a loop twin, ties included) and N3F's retrieval mAP (vs its loop twin,
chunking-invariant, and high for separable features / chance-level for random ones)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.features.retrieval import (
    average_precision,
    average_precision_reference,
    relevance_from_labels,
    retrieval_average_precisions,
    retrieval_map,
    retrieval_map_reference,
)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_sklearn_and_reference(seed, ties, device):
    gen = torch.Generator().manual_seed(seed)
    m = 40 + 10 * seed
    scores = torch.rand(m, generator=gen, dtype=torch.float64)
    if ties:
        scores = (scores * 5).round() / 5  # 6 distinct values: large tie groups
    relevant = torch.rand(m, generator=gen) < 0.3
    relevant[seed] = True
    ap = average_precision(scores.to(device), relevant.to(device))
    expected = average_precision_score(relevant.numpy(), scores.numpy())
    assert float(ap) == pytest.approx(expected, abs=1e-12)
    assert float(ap) == pytest.approx(float(average_precision_reference(scores, relevant)), abs=1e-12)


def test_average_precision_known_values_and_tie_rule():
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert float(average_precision(scores, torch.tensor([True, False, True]))) == pytest.approx((1 + 2 / 3) / 2)
    assert float(average_precision(scores, torch.tensor([False, False, True]))) == pytest.approx(1 / 3)
    assert float(average_precision(scores, torch.tensor([True, True, False]))) == 1.0
    # A tie is retrieved together: the order in which tied items lie does not matter.
    tied = torch.tensor([0.5, 0.5, 0.5, 0.1])
    a = average_precision(tied, torch.tensor([True, False, False, True]))
    b = average_precision(tied, torch.tensor([False, False, True, True]))
    assert float(a) == float(b) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_average_precision_errors():
    with pytest.raises(ConfigError, match="no relevant item"):
        average_precision(torch.rand(5), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ConfigError, match="boolean tensor of shape"):
        average_precision(torch.rand(5), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="NaN"):
        average_precision(torch.tensor([0.1, float("nan")]), torch.ones(2, dtype=torch.bool))


def clustered_scene(num_views=3, pixels=40, objects=4, noise=0.3, seed=0, dim=8):
    """Per-pixel object labels and features = the object's embedding + noise, L2-normalised."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, objects, (num_views * pixels,), generator=gen)
    labels[::13] = -1  # some void pixels
    views = torch.arange(num_views).repeat_interleave(pixels)
    emb = F.normalize(torch.randn(objects + 1, dim, generator=gen, dtype=torch.float64), dim=-1)
    feats = F.normalize(emb[labels + 1] + noise * torch.randn(len(labels), dim, generator=gen), dim=-1)
    return feats, labels, views


def view_queries(feats, labels, views, view=0):
    """One query per object present in ``view``: the renormalised mean of its pixels there (N3F eq. 4)."""
    q_labels = [int(c) for c in labels[(views == view) & (labels >= 0)].unique()]
    q = torch.stack([F.normalize(feats[(views == view) & (labels == c)].mean(0), dim=0) for c in q_labels])
    return q, torch.tensor(q_labels), torch.full((len(q_labels),), view)


def test_retrieval_map_matches_reference_and_chunking_does_not_matter(device):
    feats, labels, views = clustered_scene(noise=1.0)
    q, q_labels, q_views = view_queries(feats, labels, views)
    relevance, ignore = relevance_from_labels(q_labels, q_views, labels, views)
    got = retrieval_map(q.to(device), feats.to(device), relevance.to(device), ignore.to(device))
    expected = retrieval_map_reference(q, feats, relevance, ignore)
    assert float(got) == pytest.approx(float(expected), abs=1e-12)
    small = retrieval_map(q, feats, relevance, ignore, chunk_size=7, max_scores=50)
    assert float(small) == pytest.approx(float(expected), abs=1e-12)
    # Passing only the other views' pixels is the same protocol as ignoring the query's view.
    other = views != 0
    direct = retrieval_map(q, feats[other], relevance[:, other])
    void_ignored = retrieval_map(q, feats[other], relevance[:, other], ignore[:, other])
    assert float(void_ignored) == pytest.approx(float(got), abs=1e-12)
    assert float(direct) != pytest.approx(float(got), abs=1e-6)  # void pixels there are ranked (as irrelevant)


def test_retrieval_map_separates_good_features_from_random():
    feats, labels, views = clustered_scene(noise=0.1, pixels=60)
    q, q_labels, q_views = view_queries(feats, labels, views)
    relevance, ignore = relevance_from_labels(q_labels, q_views, labels, views)
    good = float(retrieval_map(q, feats, relevance, ignore))
    noise = F.normalize(torch.randn(feats.shape, generator=torch.Generator().manual_seed(9)), dim=-1)
    random = float(retrieval_map(q, noise.double(), relevance, ignore))
    prevalence = float(relevance.sum(1).double().div((~ignore).sum(1)).mean())
    assert good > 0.99
    assert abs(random - prevalence) < 0.15 and random < 0.5


def test_queries_without_relevant_pixels_are_nan_and_skipped():
    feats, labels, views = clustered_scene()
    q, q_labels, q_views = view_queries(feats, labels, views)
    q_labels = q_labels.clone()
    q_labels[0] = 99  # an object seen nowhere else
    relevance, ignore = relevance_from_labels(q_labels, q_views, labels, views)
    aps = retrieval_average_precisions(q, feats, relevance, ignore)
    assert torch.isnan(aps[0]) and not bool(torch.isnan(aps[1:]).any())
    assert float(retrieval_map(q, feats, relevance, ignore)) == pytest.approx(float(aps[1:].mean()))
    with pytest.raises(ConfigError, match="no query has a relevant target pixel"):
        retrieval_map(q[:1], feats, relevance[:1], ignore[:1])


def test_relevance_from_labels_rules():
    relevance, ignore = relevance_from_labels(
        torch.tensor([1, 2]), torch.tensor([0, 1]), torch.tensor([1, 1, 2, -1, 2]), torch.tensor([0, 1, 1, 1, 0])
    )
    assert relevance.tolist() == [[False, True, False, False, False], [False, False, False, False, True]]
    assert ignore.tolist() == [[True, False, False, True, True], [False, True, True, True, False]]


def test_retrieval_shape_errors():
    with pytest.raises(ConfigError, match="same d"):
        retrieval_map(torch.rand(2, 4), torch.rand(5, 3), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ConfigError, match="target_relevance must be boolean"):
        retrieval_map(torch.rand(2, 4), torch.rand(5, 4), torch.ones(2, 4, dtype=torch.bool))
