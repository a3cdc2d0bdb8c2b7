"""Dataset-level PCA of teacher features (N3F / DFF reduce DINO to 64 dimensions this way).

One basis is fitted over the patches of *all* images, so that every image is projected the same way and features
stay comparable across views. The fit is deterministic: patches are subsampled with a seeded generator, the
covariance is accumulated in float64, and each component's sign is fixed (its largest-magnitude entry is positive).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass
class PCABasis:
    """An affine projection ``(x - mean) @ components`` onto the leading principal directions."""

    mean: Float[Tensor, " c"]
    """Mean of the fitted samples."""
    components: Float[Tensor, "c d"]
    """Orthonormal principal directions as columns, by decreasing variance."""
    explained_variance: Float[Tensor, " d"]
    """Variance of the samples along each component."""

    @property
    def in_dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.components.shape[1])

    def project(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "*batch d"]:
        """Project (not normalised) in float32 or the input's wider precision."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        mean = self.mean.to(x.device, dtype)
        return (x.to(dtype) - mean) @ self.components.to(x.device, dtype)


def sample_rows(rows: Float[Tensor, "m c"], max_samples: int, seed: int) -> Float[Tensor, "k c"]:
    """All rows when there are at most ``max_samples``, else a seeded uniform subsample (in original order)."""
    if max_samples <= 0:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    m = rows.shape[0]
    if m <= max_samples:
        return rows
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(m, generator=gen)[:max_samples].sort().values
    return rows[pick.to(rows.device)]


def fit_pca(samples: Float[Tensor, "m c"], dim: int) -> PCABasis:
    """Fit the ``dim`` leading principal components of ``samples`` (eigen-decomposition of the float64 covariance)."""
    m, c = samples.shape
    if not 0 < dim <= c:
        raise ValueError(f"PCA dimension {dim} must be in [1, {c}] (the input dimension)")
    if m < 2:
        raise ValueError(f"PCA needs at least 2 samples, got {m}")
    x = samples.detach().to("cpu", torch.float64)
    mean = x.mean(dim=0)
    xc = x - mean
    cov = xc.T @ xc / (m - 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(evals, descending=True)[:dim]
    evals, evecs = evals[order].clamp_min(0.0), evecs[:, order]
    # Deterministic sign: the largest-magnitude entry of each component is positive.
    lead = evecs.abs().argmax(dim=0)
    signs = torch.sign(evecs[lead, torch.arange(dim)])
    signs[signs == 0] = 1.0
    evecs = evecs * signs
    return PCABasis(mean=mean.float(), components=evecs.float(), explained_variance=evals.float())
