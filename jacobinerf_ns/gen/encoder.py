"""The 2D encoder: per-view depth features (an FPN at H/4, H/2, H) and per-view semantic logits.

GSNeRF uses a U-Net with an ImageNet MobileNetV3-small encoder; no weights can be downloaded here, so the default is
a small U-Net trained from scratch (:class:`UNetBackbone`). Users who have weights can name a timm backbone
(``backbone="mobilenetv3_small_100"``, ``backbone_checkpoint=PATH``): its stride-2/4/8 feature maps replace ours and the
same decoder follows. Norms are GroupNorm (independent of the number of views in a batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from jacobinerf_ns.errors import ConfigError


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv, GroupNorm, ReLU."""
    groups = max(1, min(4, cout // 4))
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.ReLU()
    )


@dataclass
class EncoderConfig:
    """Sizes of the 2D encoder."""

    channels: tuple[int, int, int, int] = (16, 32, 48, 64)
    """Widths of our U-Net at H, H/2, H/4, H/8 (ignored with a timm backbone, except the last)."""
    fpn_channels: tuple[int, int, int] = (32, 16, 8)
    """Depth-feature widths at H/4, H/2, H (GSNeRF: 32 / 16 / 8)."""
    semantic_hidden: int = 32
    """Width of the semantic head."""
    backbone: str | None = None
    """A timm model name (``features_only``) to use instead of our from-scratch U-Net encoder, e.g.
    ``mobilenetv3_small_100`` as GSNeRF; weights come only from ``backbone_checkpoint`` (never downloaded)."""
    backbone_checkpoint: Path | None = None
    """Local weights for ``backbone`` (a state dict, or a checkpoint holding one under "state_dict" / "model")."""


class UNetBackbone(nn.Module):
    """Four levels (H, H/2, H/4, H/8) of two conv blocks each."""

    def __init__(self, channels: tuple[int, int, int, int]):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.level0 = nn.Sequential(conv_block(3, c0), conv_block(c0, c0))
        self.level1 = nn.Sequential(conv_block(c0, c1, 2), conv_block(c1, c1))
        self.level2 = nn.Sequential(conv_block(c1, c2, 2), conv_block(c2, c2))
        self.level3 = nn.Sequential(conv_block(c2, c3, 2), conv_block(c3, c3))
        self.out_channels = (c0, c1, c2, c3)

    def forward(self, x: Tensor) -> list[Tensor]:
        f0 = self.level0(x)
        f1 = self.level1(f0)
        f2 = self.level2(f1)
        return [f0, f1, f2, self.level3(f2)]


def _load_backbone_weights(model: nn.Module, path: Path) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"backbone checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"unreadable backbone checkpoint: {path} ({exc.__class__.__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"backbone checkpoint {path} does not hold a state dict")
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ConfigError(f"backbone checkpoint {path} has no tensor matching the backbone's parameters")
    model.load_state_dict(matched, strict=False)


class TimmBackbone(nn.Module):
    """A timm ``features_only`` model; we take its maps at strides 2, 4, 8 and add a full-resolution stem."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, name: str, checkpoint: Path | None, stem_channels: int):
        super().__init__()
        import timm

        try:
            net = timm.create_model(name, features_only=True, pretrained=False)
        except Exception as exc:  # noqa: BLE001 - unknown names, unsupported feature extraction
            raise ConfigError(f"timm backbone {name!r} is not usable with features_only ({exc})") from None
        reductions = list(net.feature_info.reduction())
        missing = [s for s in (2, 4, 8) if s not in reductions]
        if missing:
            raise ConfigError(f"timm backbone {name!r} has no feature maps at strides {missing}")
        self.picks = [reductions.index(s) for s in (2, 4, 8)]
        self.net = net
        if checkpoint is not None:
            _load_backbone_weights(net, checkpoint)
        self.stem = nn.Sequential(conv_block(3, stem_channels), conv_block(stem_channels, stem_channels))
        chans = net.feature_info.channels()
        self.out_channels = (stem_channels, *[chans[i] for i in self.picks])
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> list[Tensor]:
        h, w = x.shape[-2:]
        feats = self.net((x - self.mean) / self.std)
        outs = [self.stem(x)]
        for i, s in zip(self.picks, (2, 4, 8), strict=True):
            f = feats[i]
            size = (-(-h // s), -(-w // s))
            outs.append(f if tuple(f.shape[-2:]) == size else F.interpolate(f, size=size, mode="bilinear"))
        return outs


class Encoder(nn.Module):
    """Backbone + FPN decoder (depth features at H/4, H/2, H) + semantic head (logits at H)."""

    def __init__(self, config: EncoderConfig, num_classes: int):
        super().__init__()
        self.config = config
        if config.backbone is None:
            self.backbone: nn.Module = UNetBackbone(config.channels)
        else:
            self.backbone = TimmBackbone(config.backbone, config.backbone_checkpoint, config.channels[0])
        c0, c1, c2, c3 = self.backbone.out_channels
        f4, f2, f1 = config.fpn_channels
        self.lat3 = nn.Conv2d(c3, f4, 1)
        self.lat2 = nn.Conv2d(c2, f4, 1)
        self.lat1 = nn.Conv2d(c1, f2, 1)
        self.lat0 = nn.Conv2d(c0, f1, 1)
        self.smooth4 = conv_block(f4, f4)
        self.reduce2 = nn.Conv2d(f4, f2, 1)
        self.smooth2 = conv_block(f2, f2)
        self.reduce1 = nn.Conv2d(f2, f1, 1)
        self.smooth1 = conv_block(f1, f1)
        hid = config.semantic_hidden
        self.semantic = nn.Sequential(
            conv_block(f1 + f2 + f4, hid), conv_block(hid, hid), nn.Conv2d(hid, num_classes, 1)
        )
        self.num_classes = num_classes

    @staticmethod
    def _up(x: Tensor, like: Tensor) -> Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(
        self, images: Float[Tensor, "v 3 h w"]
    ) -> tuple[list[Float[Tensor, "v c hl wl"]], Float[Tensor, "v k h w"]]:
        """Depth features ``[H/4, H/2, H]`` and semantic logits at H (images in [0, 1])."""
        x = images * 2.0 - 1.0 if self.config.backbone is None else images
        f0, f1, f2, f3 = self.backbone(x)
        p4 = self.smooth4(self.lat2(f2) + self._up(self.lat3(f3), f2))
        p2 = self.smooth2(self.lat1(f1) + self._up(self.reduce2(p4), f1))
        p1 = self.smooth1(self.lat0(f0) + self._up(self.reduce1(p2), f0))
        sem_in = torch.cat([p1, self._up(p2, p1), self._up(p4, p1)], dim=1)
        return [p4, p2, p1], self.semantic(sem_in)
