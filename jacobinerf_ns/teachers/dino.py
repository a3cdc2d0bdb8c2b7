"""DINO (v1) ViT teacher through timm 0.6.7: dense last-layer patch features, as the official JacobiNeRF code uses.

Weights, in order of precedence: ``checkpoint`` (a local file); else, with ``pretrained``, the official release file
from torch.hub's cache directory (``<torch hub dir>/checkpoints/``), or downloaded there when downloads are allowed
and ``HF_HUB_OFFLINE`` is not set (checked first, so an offline machine fails at once instead of retrying for a
minute); else (``pretrained=False``) a seeded random initialisation, for tests only (its name says ``random-init``).

Checkpoint formats read: the official DINO release (``dino_deitsmall8_pretrain.pth``: a plain state dict with the
ViT's keys, no head), DINO training checkpoints (``{"teacher": {"module.backbone.<key>": ...}, "student": ...,
"args": ...}``), and timm / DeiT state dicts (``{"model": ...}``, ``{"state_dict": ...}``). Prefixes ``module.``,
``backbone.`` and ``model.`` are stripped and ``head.*`` is ignored; any other missing, unexpected or mis-shaped key
is a one-line :class:`TeacherWeightsError`.

Dense features: the image is resized (bilinear, antialiased) so that its shorter side is ``load_size`` and both
sides are multiples of the patch size (aspect kept up to that rounding: ``patch_grid_hw``), ImageNet-normalised,
and run through the ViT with the positional embedding bicubically interpolated to the patch grid (timm 0.6.7 has no
dynamic image size). The output is the last layer's patch tokens after the final norm (``facet="token"``) or the
``key`` projections of the last block (``facet="key"``, as dino-vit-features), CLS dropped, L2-normalised.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers.base import (
    GroundTruth,
    NetworkTeacher,
    TeacherConfig,
    TeacherWeightsError,
    l2_normalize,
)


class DinoModelSpec(NamedTuple):
    patch_size: int
    embed_dim: int
    url: str


_DINO_URL = "https://dl.fbaipublicfiles.com/dino"
DINO_MODELS: dict[str, DinoModelSpec] = {
    "vit_small_patch8_224_dino": DinoModelSpec(
        8, 384, f"{_DINO_URL}/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth"
    ),
    "vit_small_patch16_224_dino": DinoModelSpec(
        16, 384, f"{_DINO_URL}/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
    ),
    "vit_base_patch8_224_dino": DinoModelSpec(8, 768, f"{_DINO_URL}/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth"),
    "vit_base_patch16_224_dino": DinoModelSpec(
        16, 768, f"{_DINO_URL}/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"
    ),
}
"""The DINO v1 models of timm 0.6.7 and their official weight files."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "JACOBINERF_OFFLINE")
_CHECKPOINT_WRAPPERS = ("teacher", "student", "model", "state_dict", "module")
_PREFIXES = ("module.", "backbone.", "model.")
_IGNORED_PREFIXES = ("head.", "fc_norm.", "pre_logits.")


@dataclass
class DinoTeacherConfig(TeacherConfig):
    """DINO ViT teacher (timm 0.6.7)."""

    _target: type = field(default_factory=lambda: DinoTeacher)
    """Teacher class to instantiate."""
    name: str = "dino"
    """Label of the teacher in results and cache files (the model name is appended)."""
    model_name: Literal[
        "vit_small_patch8_224_dino",
        "vit_base_patch8_224_dino",
        "vit_small_patch16_224_dino",
        "vit_base_patch16_224_dino",
    ] = "vit_small_patch8_224_dino"
    """timm DINO model (ViT-S/8 is what the official JacobiNeRF code uses)."""
    checkpoint: Path | None = None
    """Local weight file (official DINO release, DINO training checkpoint or timm state dict); overrides pretrained."""
    checkpoint_key: str = "teacher"
    """Which network of a DINO training checkpoint to load ("teacher" or "student")."""
    pretrained: bool = True
    """Without checkpoint: load the official weights (torch.hub cache, or download); False = random init (tests)."""
    allow_download: bool = True
    """Allow downloading the official weights (never tried when HF_HUB_OFFLINE=1)."""
    init_seed: int = 0
    """Seed of the random initialisation (pretrained=False only)."""
    load_size: int | None = 224
    """Resize images so that their shorter side has this many pixels (then rounded to the patch size); None: as is."""
    facet: Literal["token", "key"] = "token"
    """Last-layer patch tokens after the final norm, or the key projections of the last block (dino-vit-features)."""
    pca_dim: int | None = 64
    """PCA (one basis fitted over the whole dataset) to this many dims, then re-normalise; None: keep 384 / 768."""
    batch_size: int = 4
    """Images per forward pass."""
    device: str | None = None
    """Torch device for extraction; None: CUDA when available, else CPU."""

    non_feature_fields = ("show_progress", "batch_size", "device", "allow_download")

    def raw_dim(self) -> int:
        return DINO_MODELS[self.model_name].embed_dim

    def weights_source(self) -> str:
        if self.checkpoint is not None:
            return "checkpoint"
        return "hub" if self.pretrained else "random-init"

    def feature_identity(self) -> dict[str, Any]:
        ident = super().feature_identity()
        source = self.weights_source()
        for name in ("checkpoint", "checkpoint_key", "pretrained", "init_seed"):
            ident.pop(name, None)
        if source == "checkpoint":
            ident["weights"] = f"checkpoint-sha256:{file_sha256(self.checkpoint)}:{self.checkpoint_key}"
        elif source == "hub":
            ident["weights"] = f"hub:{DINO_MODELS[self.model_name].url}"
        else:
            ident["weights"] = f"random-init:{self.init_seed}"
        return ident

    def check(self) -> None:
        if self.model_name not in DINO_MODELS:
            raise ConfigError(f"unknown DINO model {self.model_name!r}; choose one of {sorted(DINO_MODELS)}")
        super().check()
        if self.load_size is not None and self.load_size < DINO_MODELS[self.model_name].patch_size:
            raise ConfigError(f"DINO teacher: load_size {self.load_size} is smaller than one patch")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path, what: str = "DINO teacher checkpoint") -> str:
    """sha256 of a checkpoint file (memoised per path, size and mtime); a missing file is a clear error naming
    ``what`` it is."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherWeightsError(f"{what} not found: {path}")
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
        _SHA_CACHE[memo] = digest.hexdigest()
    return _SHA_CACHE[memo]


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_ENV)


def first_line(exc: BaseException) -> str:
    """An exception as one short line (its type and the first line of its message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def read_checkpoint(path: Path) -> Any:
    """``torch.load`` of a weight file, safely (``weights_only``; DINO training checkpoints' ``args`` allowed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherWeightsError(f"DINO teacher checkpoint not found: {path}")
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    allow = safe_globals([argparse.Namespace]) if safe_globals is not None else contextlib.nullcontext()
    try:
        with allow:
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TeacherWeightsError(f"cannot read DINO teacher checkpoint {path} ({first_line(exc)})") from exc


def extract_state_dict(obj: Any, checkpoint_key: str, label: str) -> dict[str, Tensor]:
    """The backbone state dict inside a checkpoint object, prefixes stripped and heads dropped."""
    if not isinstance(obj, dict):
        raise TeacherWeightsError(f"{label} holds a {type(obj).__name__}, not a state dict")
    wrappers = (checkpoint_key, *(w for w in _CHECKPOINT_WRAPPERS if w != checkpoint_key))
    for wrapper in wrappers:
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise TeacherWeightsError(f"{label}: entry {key!r} is a {type(value).__name__}, not a tensor")
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        if not key.startswith(_IGNORED_PREFIXES):
            out[key] = value
    if not out:
        raise TeacherWeightsError(f"{label} holds no backbone weights")
    return out


def _resize_pos_embed(pos: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """Bicubically interpolate a ``(1, 1 + g*g, C)`` positional embedding (CLS first) to ``grid_hw``."""
    cls, patches = pos[:, :1], pos[:, 1:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise TeacherWeightsError(f"positional embedding with {patches.shape[1]} patch tokens is not a square grid")
    if (side, side) == tuple(grid_hw):
        return pos
    grid = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=grid_hw, mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, grid_hw[0] * grid_hw[1], -1)], dim=1)


def load_backbone_weights(model: nn.Module, state: dict[str, Tensor], model_name: str, label: str) -> None:
    """Load ``state`` into a timm ViT strictly; every mismatch is a one-line :class:`TeacherWeightsError`."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise TeacherWeightsError(
            f"{label} does not fit {model_name}: missing keys {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected keys {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )
    state = dict(state)
    pos = state["pos_embed"]
    if pos.shape != expected["pos_embed"].shape and pos.ndim == 3 and pos.shape[2] == expected["pos_embed"].shape[2]:
        side = math.isqrt(expected["pos_embed"].shape[1] - 1)
        state["pos_embed"] = _resize_pos_embed(pos, (side, side))
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise TeacherWeightsError(
                f"{label} does not fit {model_name}: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)} (a checkpoint of another model?)"
            )
    model.load_state_dict(state, strict=True)


def _hub_hint(model_name: str) -> str:
    url = DINO_MODELS[model_name].url
    return (
        f"download {url} on a machine with internet and pass the file with the teacher's `checkpoint` option "
        "(e.g. --pipeline.datamanager.teacher.checkpoint PATH)"
    )


def hub_checkpoint_path(model_name: str) -> Path:
    """Where torch.hub (and timm) keep the official weight file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(DINO_MODELS[model_name].url).path).name


def fetch_hub_checkpoint(model_name: str, allow_download: bool) -> Path:
    """The official weight file from torch.hub's cache, downloading it when allowed and online."""
    path = hub_checkpoint_path(model_name)
    if path.is_file():
        return path
    url = DINO_MODELS[model_name].url
    if hub_offline() or not allow_download:
        why = "HF_HUB_OFFLINE is set" if hub_offline() else "allow_download is off"
        raise TeacherWeightsError(
            f"DINO teacher {model_name}: no pretrained weights are available offline ({why}, none in {path.parent}); "
            + _hub_hint(model_name)
        )
    try:
        host = urlparse(url).hostname or ""
        socket.create_connection((host, 443), timeout=5).close()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except Exception as exc:
        raise TeacherWeightsError(
            f"DINO teacher {model_name}: no pretrained weights are available offline (download failed: "
            f"{first_line(exc)}); " + _hub_hint(model_name)
        ) from exc
    return path


class DinoTeacher(NetworkTeacher):
    """Dense DINO features (module docstring). The network is built on first use, so a cache hit needs no weights."""

    config: DinoTeacherConfig

    def __init__(self, config: DinoTeacherConfig) -> None:
        super().__init__(config)
        self.spec = DINO_MODELS[config.model_name]
        self._pos_cache: dict[tuple[int, int], Tensor] = {}

    @property
    def name(self) -> str:
        cfg = self.config
        label = f"{cfg.name}-{cfg.model_name}"
        if cfg.facet != "token":
            label += f"-{cfg.facet}"
        if cfg.weights_source() == "random-init":
            label += "-random-init"
        return label

    @property
    def stride(self) -> int:
        return self.spec.patch_size

    def _build_model(self) -> nn.Module:
        cfg = self.config
        source = cfg.weights_source()
        path: Path | None = None
        if source == "checkpoint":
            path = Path(cfg.checkpoint).expanduser()
        elif source == "hub":
            path = fetch_hub_checkpoint(cfg.model_name, cfg.allow_download)
        state = None
        if path is not None:  # read before the (slow) timm import so a bad file fails fast
            state = extract_state_dict(read_checkpoint(path), cfg.checkpoint_key, f"DINO checkpoint {path}")
        import timm  # ~5 s import: only when a network is really needed

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = timm.create_model(cfg.model_name, pretrained=False, num_classes=0)
        if state is not None:
            load_backbone_weights(model, state, cfg.model_name, f"DINO checkpoint {path}")
        return model.eval().requires_grad_(False).to(self.device)

    def _pos_embed(self, grid_hw: tuple[int, int]) -> Tensor:
        if grid_hw not in self._pos_cache:
            self._pos_cache[grid_hw] = _resize_pos_embed(self.model.pos_embed, grid_hw)
        return self._pos_cache[grid_hw]

    def preprocess(self, image: Float[Tensor, "H W 3"]) -> Float[Tensor, "3 h*p w*p"]:
        """Resize to the patch grid times the patch size and ImageNet-normalise."""
        h, w = self.grid_hw(tuple(image.shape[:2]))
        p = self.stride
        x = image.to(self.device, torch.float32).permute(2, 0, 1)[None]
        if tuple(x.shape[2:]) != (h * p, w * p):
            x = F.interpolate(x, size=(h * p, w * p), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        return ((x - mean) / std)[0]

    @torch.no_grad()
    def forward_dense(self, batch: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b h w c"]:
        """Raw (not normalised) dense features of a preprocessed batch."""
        model = self.model
        b, _, height, width = batch.shape
        grid = (height // self.stride, width // self.stride)
        x = model.patch_embed.norm(model.patch_embed.proj(batch).flatten(2).transpose(1, 2))
        x = torch.cat([model.cls_token.expand(b, -1, -1), x], dim=1) + self._pos_embed(grid)
        if self.config.facet == "token":
            x = model.norm(model.blocks(x))
        else:
            for block in model.blocks[:-1]:
                x = block(x)
            last = model.blocks[-1]
            n, c = x.shape[1], x.shape[2]
            qkv = last.attn.qkv(last.norm1(x)).reshape(b, n, 3, c)
            x = qkv[:, :, 1]  # keys, heads concatenated
        return x[:, 1:].reshape(b, *grid, -1)

    def extract_many(
        self, images: list[Tensor], indices: list[int], gts: list[GroundTruth | None]
    ) -> list[Float[Tensor, "h w d"]]:
        batch = torch.stack([self.preprocess(img) for img in images])
        return list(l2_normalize(self.forward_dense(batch)).cpu().unbind(0))

    def extract(self, image: Float[Tensor, "H W 3"], index: int, gt: GroundTruth | None) -> Float[Tensor, "h w d"]:
        return self.extract_many([image], [index], [gt])[0]
