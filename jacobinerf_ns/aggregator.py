"""Dense-setting aggregator: a small MLP that turns per-label responses into labels, trained on the labelled view.

Official architecture: ``n → 128 → 64 → n`` with ReLU, cross-entropy on every valid pixel of the labelled view,
Adam (lr 1e-3). Inputs are standardised with the labelled view's statistics (stored in the module), since raw
response scales differ between propagation methods.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from jacobinerf_ns.data.class_table import IGNORE_LABEL


class ResponseAggregator(nn.Module):
    """``n → 128 → 64 → n`` MLP on standardised responses."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_labels, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, num_labels)
        )
        self.register_buffer("mean", torch.zeros(num_labels))
        self.register_buffer("std", torch.ones(num_labels))

    def forward(self, responses: Float[Tensor, "p n"]) -> Float[Tensor, "p n"]:
        return self.net((responses - self.mean) / self.std)


def train_aggregator(
    responses: Float[Tensor, "p n"], labels: Int[Tensor, " p"], steps: int = 1000, lr: float = 1e-3, seed: int = 0
) -> ResponseAggregator:
    """Fit the aggregator on one view's responses and labels (``IGNORE_LABEL`` pixels skipped), full batch."""
    valid = labels != IGNORE_LABEL
    x, y = responses[valid].float(), labels[valid].long()
    if len(y) == 0:
        raise ValueError("the labelled view has no valid pixels to train the aggregator on")
    torch.manual_seed(seed)
    agg = ResponseAggregator(responses.shape[1])
    agg.mean.copy_(x.mean(dim=0))
    agg.std.copy_(x.std(dim=0).clamp(min=1e-6))
    opt = torch.optim.Adam(agg.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(agg(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    agg.eval()
    return agg
