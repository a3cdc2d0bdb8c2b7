"""Pure kernels of the feature-field family (DESIGN §5), each with a plain-loop ``*_reference`` twin:

* :mod:`~jacobinerf_ns.features.smoothing` — TV, bilateral and mask-guided regularisers on rendered feature patches;
* :mod:`~jacobinerf_ns.features.masks` — 2D mask sources (felzenszwalb, slic, ground-truth, SAM) and their cache;
* :mod:`~jacobinerf_ns.features.queries` — click / region / box queries, cosine maps, thresholds, LERF/DFF relevancy;
* :mod:`~jacobinerf_ns.features.edits` — per-sample extraction, deletion, recolouring, channel permutation;
* :mod:`~jacobinerf_ns.features.retrieval` — average precision and N3F's retrieval mAP.

Importing this package imports neither scikit-image nor segment-anything (only computing such masks does).
"""

from __future__ import annotations

from jacobinerf_ns.features.edits import delete_density, extract_density, permute_channels, recolor
from jacobinerf_ns.features.masks import (
    MASK_CACHE_FORMAT_VERSION,
    SAM_ARCHITECTURES,
    FelzenszwalbMaskConfig,
    GroundTruthMaskConfig,
    MaskCacheWarning,
    MaskSet,
    MaskSourceConfig,
    MaskSourceError,
    MaskWeightsError,
    SamMaskConfig,
    SlicMaskConfig,
    compute_masks,
    finalize_labels,
    merge_masks,
)
from jacobinerf_ns.features.queries import (
    box_query,
    click_query,
    region_query,
    relevancy,
    similarity_map,
    threshold_mask,
)
from jacobinerf_ns.features.retrieval import (
    average_precision,
    relevance_from_labels,
    retrieval_average_precisions,
    retrieval_map,
)
from jacobinerf_ns.features.smoothing import bilateral_loss, mask_loss, tv_loss

__all__ = [
    "MASK_CACHE_FORMAT_VERSION",
    "SAM_ARCHITECTURES",
    "FelzenszwalbMaskConfig",
    "GroundTruthMaskConfig",
    "MaskCacheWarning",
    "MaskSet",
    "MaskSourceConfig",
    "MaskSourceError",
    "MaskWeightsError",
    "SamMaskConfig",
    "SlicMaskConfig",
    "average_precision",
    "bilateral_loss",
    "box_query",
    "click_query",
    "compute_masks",
    "delete_density",
    "extract_density",
    "finalize_labels",
    "mask_loss",
    "merge_masks",
    "permute_channels",
    "recolor",
    "region_query",
    "relevance_from_labels",
    "relevancy",
    "retrieval_average_precisions",
    "retrieval_map",
    "similarity_map",
    "threshold_mask",
    "tv_loss",
]
