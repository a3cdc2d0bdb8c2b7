"""LSeg teacher (Li et al., ICLR 2022): per-pixel 512-d embeddings aligned with CLIP's text space, from the official
checkpoint of isl-org/lang-seg (e.g. ``demo_e200.ckpt``, backbone ``clip_vitl16_384``), and the checkpoint's own
CLIP text encoder for text queries.

Architecture (this package's implementation of the released model, parameter names as in the checkpoint):

* ``pretrained.model``: a ViT (timm layout: ``patch_embed.proj``, ``cls_token``, ``pos_embed``,
  ``blocks.<i>.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``; LayerNorm eps 1e-6, exact GELU). ViT-L/16
  (24 blocks, width 1024) for ``clip_vitl16_384``, ViT-B/32 (12 blocks, width 768) for ``clip_vitb32_384``, both
  with a 384-pixel positional embedding that is bilinearly interpolated to the input's grid.
* ``pretrained.act_postprocess{1..4}``: the outputs of four blocks (5, 11, 17, 23 for ViT-L/16; 2, 5, 8, 11 for
  ViT-B/32) are "reassembled" DPT-style: the CLS token is concatenated to every patch token and projected back
  (``0.project.0``, Linear + GELU), the tokens are laid out on the patch grid, a 1×1 conv (``3``) maps them to
  (256, 512, 1024, 1024) resp. (96, 192, 384, 768) channels and ``4`` resamples them to strides 4, 8, 16, 32 of the
  input (transposed convs, or a stride-2 3×3 conv for ViT-L/16's last level).
* ``scratch``: 3×3 convs ``layer{1..4}_rn`` to 256 channels, four fusion blocks ``refinenet{4..1}`` (two residual
  conv units with batch norm, ×2 bilinear upsampling with ``align_corners=True``, a 1×1 ``out_conv``) from the
  coarsest level to the finest, and ``head1``, a 1×1 conv to 512 channels: the per-pixel embedding, at half the
  input resolution, which LSeg normalises and compares with the text embeddings.
* ``clip_pretrained``: OpenAI's CLIP ViT-B/32; only its text tower is used (:class:`ClipTextEncoder`).

Ignored entries (present in the release, unused by LSeg's features): ``clip_pretrained.visual.*`` and
``clip_pretrained.logit_scale``, the ViT's ``norm.*`` and ``head.*``, ``scratch.head_block.*`` (arch options 1/2,
which act on the class logits, not on the embedding). Every other entry must match exactly (key and shape), else a
one-line :class:`TeacherWeightsError` names it. Read: a PyTorch-Lightning checkpoint (``{"state_dict": {"net.<key>":
...}, ...}``; classes of Lightning it refers to are replaced by inert stand-ins, nothing of Lightning is needed or
run) or a plain state dict with or without the ``net.`` prefix (e.g. lseg-minimal's ``lseg_minimal_e200.ckpt``).

Features on the patch grid: the image is resized (bilinear, antialiased) so that its shorter side is ``load_size``
with both sides rounded to multiples of 32 (the decoder needs them), normalised with mean = std = 0.5 as in the
official code, and run through the image encoder; each of the 512-d per-pixel embeddings (half the input resolution)
is L2-normalised, then they are area-averaged onto the grid of :func:`~jacobinerf_ns.teachers.base.patch_grid_hw`
for ``stride`` pixels per patch of the resized image (default 16: one feature per 8×8 embeddings), and re-normalised.
No PCA by default (``pca_dim=None``): text queries compare the features with :meth:`LSegTeacher.encode_text`.

Without ``checkpoint`` the teacher fails with one line saying where to get the file (no weights ship with any
package; nothing is downloaded); ``random_init=True`` builds seeded random weights instead, for tests only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers.base import (
    GroundTruth,
    NetworkTeacher,
    TeacherConfig,
    TeacherError,
    TeacherWeightsError,
    l2_normalize,
)
from jacobinerf_ns.teachers.clip import (
    check_state_dict,
    read_weight_file,
    resize_pos_embed,
    unwrap_state_dict,
    weights_sha256,
)
from jacobinerf_ns.teachers.text import CLIP_VITB32_TEXT, ClipTextEncoder, ClipTextSpec, check_texts

LSEG_MEAN = (0.5, 0.5, 0.5)
LSEG_STD = (0.5, 0.5, 0.5)
LSEG_EMBED_DIM = 512
LEVEL_STRIDES = (4, 8, 16, 32)
"""Input pixels per feature of the four reassembled levels."""
INPUT_MULTIPLE = 32
"""Input sides must be multiples of this (the fusion blocks double the coarsest level three times)."""
IGNORED_PREFIXES = (
    "clip_pretrained.visual.",
    "clip_pretrained.logit_scale",
    "pretrained.model.norm.",
    "pretrained.model.head.",
    "pretrained.model.pre_logits.",
    "scratch.head_block.",
    "scratch.output_conv.",
)
"""Checkpoint entries LSeg's per-pixel embedding does not use (module docstring)."""
LSEG_CHECKPOINT_HINT = (
    "download the official checkpoint (github.com/isl-org/lang-seg, README: demo_e200.ckpt for clip_vitl16_384) "
    "on a machine with internet and pass it with the teacher's `checkpoint` option "
    "(e.g. --pipeline.datamanager.teacher.checkpoint PATH)"
)


class LSegSpec(NamedTuple):
    """Shape of an LSeg ViT backbone and its text encoder."""

    patch_size: int
    width: int
    depth: int
    heads: int
    hooks: tuple[int, int, int, int]
    channels: tuple[int, int, int, int]
    native_grid: int
    text: ClipTextSpec


LSEG_BACKBONES: dict[str, LSegSpec] = {
    "clip_vitl16_384": LSegSpec(16, 1024, 24, 16, (5, 11, 17, 23), (256, 512, 1024, 1024), 24, CLIP_VITB32_TEXT),
    "clip_vitb32_384": LSegSpec(32, 768, 12, 12, (2, 5, 8, 11), (96, 192, 384, 768), 12, CLIP_VITB32_TEXT),
}
"""The ViT backbones of the official code (both with CLIP ViT-B/32's text encoder)."""


# ------------------------------------------------------------------------------------------------ the ViT backbone


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Float[Tensor, "b n c"]) -> Float[Tensor, "b n c"]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = _Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = _Mlp(width)

    def forward(self, x: Float[Tensor, "b n c"]) -> Float[Tensor, "b n c"]:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, width: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)


class LSegViT(nn.Module):
    """The backbone ViT; :meth:`forward` returns the token sequences after the hooked blocks."""

    def __init__(self, spec: LSegSpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_embed = _PatchEmbed(spec.width, spec.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + spec.native_grid**2, spec.width))
        self.blocks = nn.ModuleList([_Block(spec.width, spec.heads) for _ in range(spec.depth)])
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: Float[Tensor, "b 3 H W"]) -> list[Float[Tensor, "b n c"]]:
        b, _, height, width = x.shape
        p = self.spec.patch_size
        grid = (height // p, width // p)
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        pos = resize_pos_embed(self.pos_embed[0], grid, mode="bilinear")[None]
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + pos
        outs = []
        for i, block in enumerate(self.blocks[: max(self.spec.hooks) + 1]):
            tokens = block(tokens)
            if i in self.spec.hooks:
                outs.append(tokens)
        return outs


class _ProjectReadout(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * width, width), nn.GELU())

    def forward(self, x: Float[Tensor, "b n c"]) -> Float[Tensor, "b n-1 c"]:
        patches = x[:, 1:]
        return self.project(torch.cat([patches, x[:, :1].expand_as(patches)], dim=-1))


class _Reassemble(nn.Module):
    """One level of DPT's reassembly (keys ``0.project.0``, ``3``, ``4`` as in the release's ``nn.Sequential``)."""

    def __init__(self, width: int, channels: int, patch_size: int, level_stride: int) -> None:
        super().__init__()
        self.add_module("0", _ProjectReadout(width))
        self.add_module("3", nn.Conv2d(width, channels, kernel_size=1))
        if level_stride < patch_size:
            factor = patch_size // level_stride
            self.add_module("4", nn.ConvTranspose2d(channels, channels, kernel_size=factor, stride=factor))
        elif level_stride == 2 * patch_size:
            self.add_module("4", nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1))
        elif level_stride != patch_size:
            raise ConfigError(f"LSeg: cannot resample patch size {patch_size} to stride {level_stride}")

    def forward(self, tokens: Float[Tensor, "b n c"], grid: tuple[int, int]) -> Float[Tensor, "b k h w"]:
        x = getattr(self, "0")(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, *grid)
        x = getattr(self, "3")(x)
        resample = getattr(self, "4", None)
        return resample(x) if resample is not None else x


class _Backbone(nn.Module):
    def __init__(self, spec: LSegSpec) -> None:
        super().__init__()
        self.model = LSegViT(spec)
        for i, (channels, stride) in enumerate(zip(spec.channels, LEVEL_STRIDES, strict=True)):
            self.add_module(f"act_postprocess{i + 1}", _Reassemble(spec.width, channels, spec.patch_size, stride))

    def forward(self, x: Float[Tensor, "b 3 H W"]) -> list[Tensor]:
        p = self.model.spec.patch_size
        grid = (x.shape[2] // p, x.shape[3] // p)
        layers = self.model(x)
        return [getattr(self, f"act_postprocess{i + 1}")(t, grid) for i, t in enumerate(layers)]


# ----------------------------------------------------------------------------------------------------- the decoder


class _ResidualConvUnit(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(features)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(F.relu(x)))
        out = self.bn2(self.conv2(F.relu(out)))
        return out + x


class _FusionBlock(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.resConfUnit1 = _ResidualConvUnit(features)
        self.resConfUnit2 = _ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class _Scratch(nn.Module):
    def __init__(self, spec: LSegSpec, features: int) -> None:
        super().__init__()
        for i, channels in enumerate(spec.channels):
            self.add_module(f"layer{i + 1}_rn", nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False))
        for i in range(4):
            self.add_module(f"refinenet{i + 1}", _FusionBlock(features))
        self.head1 = nn.Conv2d(features, LSEG_EMBED_DIM, kernel_size=1)

    def forward(self, levels: list[Tensor]) -> Tensor:
        rn = [getattr(self, f"layer{i + 1}_rn")(x) for i, x in enumerate(levels)]
        path = self.refinenet4(rn[3])
        path = self.refinenet3(path, rn[2])
        path = self.refinenet2(path, rn[1])
        path = self.refinenet1(path, rn[0])
        return self.head1(path)


class LSegImageEncoder(nn.Module):
    """LSeg's image encoder (module docstring): images normalised to [-1, 1] → raw 512-d embeddings at half
    resolution. Parameter names are the checkpoint's (without ``net.``)."""

    def __init__(self, spec: LSegSpec, features: int = 256) -> None:
        super().__init__()
        self.spec = spec
        self.pretrained = _Backbone(spec)
        self.scratch = _Scratch(spec, features)

    def forward(self, x: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b 512 H/2 W/2"]:
        if x.shape[2] % INPUT_MULTIPLE or x.shape[3] % INPUT_MULTIPLE:
            raise TeacherError(f"LSeg input {tuple(x.shape[2:])} is not a multiple of {INPUT_MULTIPLE}")
        return self.scratch(self.pretrained(x))


class LSegModel(nn.Module):
    """Image encoder and CLIP text encoder in the checkpoint's layout (``pretrained.*``, ``scratch.*``,
    ``clip_pretrained.*``)."""

    def __init__(self, spec: LSegSpec, features: int = 256) -> None:
        super().__init__()
        self.image = LSegImageEncoder(spec, features)
        self.text = ClipTextEncoder(spec.text)

    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        """This model's parameters under the checkpoint's names (without ``net.``)."""
        state = dict(self.image.state_dict())
        state.update({f"clip_pretrained.{k}": v for k, v in self.text.state_dict().items()})
        return state

    def load_checkpoint_state_dict(self, state: dict[str, Tensor], label: str) -> None:
        """Load checkpoint-named ``state`` (ignored entries dropped first) strictly: one-line errors."""
        kept = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
        check_state_dict(self.checkpoint_state_dict(), kept, label)
        self.image.load_state_dict({k: v for k, v in kept.items() if not k.startswith("clip_pretrained.")})
        prefix = "clip_pretrained."
        self.text.load_state_dict({k[len(prefix) :]: v for k, v in kept.items() if k.startswith(prefix)})


def pool_to_grid(pixels: Float[Tensor, "b c H W"], grid_hw: tuple[int, int]) -> Float[Tensor, "b h w c"]:
    """Unit per-pixel embeddings area-averaged onto ``grid_hw`` (bins ``[⌊iH/h⌋, ⌈(i+1)H/h⌉)``) and re-normalised."""
    unit = F.normalize(pixels, dim=1)
    return l2_normalize(F.adaptive_avg_pool2d(unit, grid_hw).permute(0, 2, 3, 1))


def pool_to_grid_reference(pixels: Float[Tensor, "b c H W"], grid_hw: tuple[int, int]) -> Float[Tensor, "b h w c"]:
    """Slow twin of :func:`pool_to_grid`: explicit loops over the patches."""
    b, c, height, width = pixels.shape
    h, w = grid_hw
    out = torch.empty(b, h, w, c, dtype=pixels.dtype)
    for i in range(h):
        y0, y1 = (i * height) // h, -((-(i + 1) * height) // h)
        for j in range(w):
            x0, x1 = (j * width) // w, -((-(j + 1) * width) // w)
            block = pixels[:, :, y0:y1, x0:x1]
            unit = block / block.norm(dim=1, keepdim=True).clamp_min(1e-12)
            mean = unit.mean(dim=(2, 3))
            out[:, i, j] = mean / mean.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return out


# -------------------------------------------------------------------------------------------------- the teacher


@dataclass
class LSegTeacherConfig(TeacherConfig):
    """LSeg teacher (official isl-org/lang-seg checkpoint): 512-d text-aligned features and CLIP text queries."""

    _target: type = field(default_factory=lambda: LSegTeacher)
    """Teacher class to instantiate."""
    name: str = "lseg"
    """Label of the teacher in results and cache files (the backbone is appended)."""
    backbone: Literal["clip_vitl16_384", "clip_vitb32_384"] = "clip_vitl16_384"
    """Backbone of the checkpoint (demo_e200.ckpt: clip_vitl16_384)."""
    checkpoint: Path | None = None
    """The official checkpoint file (Lightning .ckpt or a plain state dict); required unless random_init."""
    random_init: bool = False
    """Without checkpoint: seeded random weights instead of an error (tests only; the name says random-init)."""
    init_seed: int = 0
    """Seed of the random initialisation."""
    num_features: int = 256
    """Decoder width (the release's num_features)."""
    load_size: int | None = 480
    """Resize images so that their shorter side has this many pixels (sides then rounded to multiples of 32);
    None: as is (rounded). 480 is the official crop size."""
    stride: int = 16
    """Pixels of the resized image per patch of the output grid (the embedding itself has stride 2)."""
    pca_dim: int | None = None
    """PCA to this many dims; None (default): keep LSeg's 512-d space, as text queries need."""
    batch_size: int = 2
    """Images per forward pass."""
    device: str | None = None
    """Torch device for extraction; None: CUDA when available, else CPU."""

    non_feature_fields = ("show_progress", "batch_size", "device")

    def raw_dim(self) -> int:
        return LSEG_EMBED_DIM

    def weights_source(self) -> str:
        if self.checkpoint is not None:
            return "checkpoint"
        return "random-init" if self.random_init else "missing"

    def feature_identity(self) -> dict[str, Any]:
        ident = super().feature_identity()
        for key in ("checkpoint", "random_init", "init_seed"):
            ident.pop(key, None)
        source = self.weights_source()
        if source == "checkpoint":
            ident["weights"] = f"checkpoint-sha256:{weights_sha256(self.checkpoint, 'LSeg teacher checkpoint')}"
        elif source == "random-init":
            ident["weights"] = f"random-init:{self.init_seed}"
        else:
            ident["weights"] = "missing"
        return ident

    def check(self) -> None:
        if self.backbone not in LSEG_BACKBONES:
            raise ConfigError(f"unknown LSeg backbone {self.backbone!r}; choose one of {sorted(LSEG_BACKBONES)}")
        super().check()
        if self.stride < 2:
            raise ConfigError(f"LSeg teacher: stride {self.stride} is finer than its embedding (stride 2)")
        if self.load_size is not None and self.load_size < INPUT_MULTIPLE:
            raise ConfigError(f"LSeg teacher: load_size {self.load_size} is below {INPUT_MULTIPLE}")
        if self.num_features < 1:
            raise ConfigError(f"LSeg teacher: num_features must be positive, got {self.num_features}")


def network_input_hw(image_hw: tuple[int, int], load_size: int | None) -> tuple[int, int]:
    """Input size of the network for an image: shorter side ``load_size``, both sides rounded to multiples of 32."""
    height, width = image_hw
    scale = 1.0 if load_size is None else load_size / min(height, width)
    m = INPUT_MULTIPLE
    return max(m, round(height * scale / m) * m), max(m, round(width * scale / m) * m)


class LSegTeacher(NetworkTeacher):
    """LSeg per-pixel embeddings pooled onto the patch grid, and the checkpoint's CLIP text encoder (module
    docstring). The network is built on first use, so a cache hit needs no weights."""

    config: LSegTeacherConfig

    def __init__(self, config: LSegTeacherConfig) -> None:
        super().__init__(config)
        self.spec = LSEG_BACKBONES[config.backbone]

    @property
    def name(self) -> str:
        label = f"{self.config.name}-{self.config.backbone}"
        return label + "-random-init" if self.config.weights_source() == "random-init" else label

    @property
    def stride(self) -> int:
        return self.config.stride

    def _build_model(self) -> LSegModel:
        cfg = self.config
        source = cfg.weights_source()
        if source == "missing":
            raise TeacherWeightsError(
                f"LSeg teacher {cfg.backbone}: no checkpoint given (no package ships LSeg weights and none are "
                "downloaded); " + LSEG_CHECKPOINT_HINT
            )
        state, label = None, ""
        if source == "checkpoint":
            path = Path(cfg.checkpoint).expanduser()
            label = f"LSeg checkpoint {path}"
            raw = unwrap_state_dict(read_weight_file(path, "LSeg teacher checkpoint"), label, wrappers=("state_dict",))
            state = {k[4:] if k.startswith("net.") else k: v for k, v in raw.items()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = LSegModel(self.spec, cfg.num_features)
        if state is not None:
            model.load_checkpoint_state_dict(state, f"{label} does not fit {cfg.backbone}")
        return model.eval().requires_grad_(False).to(self.device)

    def preprocess(self, image: Float[Tensor, "H W 3"]) -> Float[Tensor, "3 H' W'"]:
        """Resize to :func:`network_input_hw` and normalise to [-1, 1] (mean = std = 0.5)."""
        size = network_input_hw(tuple(image.shape[:2]), self.config.load_size)
        x = image.to(self.device, torch.float32).permute(2, 0, 1)[None]
        if tuple(x.shape[2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(LSEG_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(LSEG_STD, device=self.device).view(1, 3, 1, 1)
        return ((x - mean) / std)[0]

    @torch.no_grad()
    def forward_pixels(self, batch: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b 512 H/2 W/2"]:
        """Raw (not normalised) per-pixel embeddings of a preprocessed batch."""
        return self.model.image(batch)

    def extract_many(
        self, images: list[Tensor], indices: list[int], gts: list[GroundTruth | None]
    ) -> list[Float[Tensor, "h w d"]]:
        grid = self.grid_hw(tuple(images[0].shape[:2]))
        batch = torch.stack([self.preprocess(img) for img in images])
        return list(pool_to_grid(self.forward_pixels(batch).float(), grid).cpu().unbind(0))

    def extract(self, image: Float[Tensor, "H W 3"], index: int, gt: GroundTruth | None) -> Float[Tensor, "h w d"]:
        return self.extract_many([image], [index], [gt])[0]

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Float[Tensor, "n d"]:
        """Unit-length embeddings of ``texts`` by the checkpoint's CLIP text encoder (float32, on the CPU), in the
        space of :meth:`extract`'s features (same ``feature_dim``): their cosine is LSeg's pixel-text score."""
        return self.model.text.encode(check_texts(texts, f"teacher '{self.name}'")).cpu()
