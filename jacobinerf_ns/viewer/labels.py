"""Live label colours of a feature-field run: each pixel takes the label of the most similar annotated feature.

This is the feature-field nearest-neighbour labeller of the propagation benchmark (``feature-field-nn``, the best
sparse method there) as a per-ray render output, so the viewer shows it as ``labels`` while the camera moves.
JacobiNeRF runs need nothing here: their ``labels`` come from ``RenderOptions.directions``
(``label_readout`` 2d-cos).

``FeatureFieldModel.extra_outputs`` calls :func:`add_feature_labels`, which does nothing unless the render options
carry annotated features (the viewer panel's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

LABEL_FEATURES = "label_features"
"""``RenderOptions.extra`` key: (a, D) rendered features of the annotated pixels."""
LABEL_INDEX = "label_index"
"""``RenderOptions.extra`` key: (a,) label index of each annotated pixel (rows of ``RenderOptions.label_colors``)."""


def nearest_labels(
    features: Float[Tensor, "r d"], keys: Float[Tensor, "a d"], key_labels: Int[Tensor, " a"]
) -> Int[Tensor, " r"]:
    """Label of the annotated feature with the highest cosine similarity, per ray."""
    sim = F.normalize(features, dim=-1) @ F.normalize(keys.to(features), dim=-1).T
    return key_labels.to(features.device)[sim.argmax(dim=-1)]


def nearest_labels_reference(features: Tensor, keys: Tensor, key_labels: Tensor) -> Tensor:
    """Loop twin of :func:`nearest_labels` (first best on ties, as ``argmax``)."""
    out = torch.zeros(features.shape[0], dtype=torch.long)
    for r in range(features.shape[0]):
        f = features[r].tolist()
        nf = sum(v * v for v in f) ** 0.5
        best, best_sim = 0, -float("inf")
        for a in range(keys.shape[0]):
            k = keys[a].tolist()
            nk = sum(v * v for v in k) ** 0.5
            sim = sum(x * y for x, y in zip(f, k, strict=True)) / max(nf * nk, 1e-12)
            if sim > best_sim:
                best, best_sim = a, sim
        out[r] = int(key_labels[best])
    return out


def add_feature_labels(outputs: dict[str, Tensor], options) -> None:
    """``labels`` (r, 3 colours) from ``outputs["features"]`` when the options carry annotated features."""
    keys = options.extra.get(LABEL_FEATURES)
    if keys is None or "features" not in outputs or options.label_colors is None:
        return
    index = nearest_labels(outputs["features"], keys, options.extra[LABEL_INDEX])
    outputs["labels"] = options.label_colors.to(outputs["features"])[index]
