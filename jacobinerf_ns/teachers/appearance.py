"""An offline teacher that sees only pixels: dense colour, oriented-gradient and texture descriptors, no weights.

It stands in for DINO where no weights exist, honestly: unlike the synthetic teacher it never reads ground truth, so
its quality is a real (weak) teacher's. Everything is a fixed function of the RGB image (deterministic, no
randomness), computed per batch with torch ops on the images' device.

Exact rules, for an image with values in [0, 1] (sRGB):

0. **Resize** (only when ``load_size`` is set): bilinear, antialiased, so that the shorter side has ``load_size``
   pixels (``round(H·s) × round(W·s)``, ``s = load_size / min(H, W)``). Everything below works at that resolution.
1. **Per-pixel maps** (filters are separable Gaussian-derivative kernels of radius ``ceil(3σ)``, applied as
   cross-correlation with replicate padding, on the lightness ``ℓ = L*/100``):

   * colour: CIELAB (D65) ``(L*, a*, b*) / 100`` and its square (for the local standard deviation);
   * gradient, per ``σ`` in ``gradient_sigmas``: ``(∂xℓ, ∂yℓ)`` with Gaussian-derivative filters; the magnitude is
     soft-binned by unsigned orientation ``θ ∈ [0, π)`` into ``num_orientations`` bins centred at ``kπ/n``
     (linear interpolation between the two nearest bin centres, cyclically): a HOG / dense-SIFT cell histogram;
   * texture, per radius ``r`` in ``lbp_radii``: the rotation-invariant uniform local binary pattern (LBP riu2,
     10 codes) of the 8 neighbours on the square ring at chessboard distance ``r`` (bit = neighbour − centre >
     ``lbp_threshold``), one-hot;
   * filter bank: squared responses of the scale-normalised Laplacian of Gaussian ``σ²(ℓxx + ℓyy)`` at each ``σ`` in
     ``log_sigmas`` and of the oriented second derivatives ``σ²∂²ℓ/∂u²`` along ``num_filter_orientations`` directions
     ``kπ/m`` at ``oriented_sigma`` (steered from ``ℓxx, ℓxy, ℓyy``).
2. **Cells**: every map is averaged over the adaptive-pooling regions of the patch grid of
   :func:`~jacobinerf_ns.teachers.base.patch_grid_hw` (adaptive average pooling's regions, as
   ``synthetic.area_pool``), so patch ``i`` summarises pixel rows
   ``[i·H/h, (i+1)·H/h)`` as the grid convention of :mod:`~jacobinerf_ns.teachers.base` requires.
3. **Context scales**: for each ``k`` in ``context_sizes`` (odd), the cell averages are averaged again over the
   ``k × k`` patches around each patch (those inside the grid): ``k = 1`` is the patch itself, ``k = 3`` its
   neighbourhood, like HOG blocks or SIFT's spatial pooling at a larger scale.
4. **Blocks**, per context scale, each normalised so that no block dominates (its length is at most about 1):

   * ``colour``: mean ``(L*, a*, b*)/100`` and standard deviation ``/100 · colour_std_gain`` (6 values; the
     deviation is smoothed as ``sqrt(var + 1e-6) − 1e-3`` so that rounding noise in flat cells stays ~0);
   * ``gradient``: per σ the histogram ``v`` soft-normalised ``v / sqrt(|v|² + gradient_eps²)`` (flat regions stay
     near 0, edges of any contrast reach length ≈ 1), the σ's concatenated and divided by ``sqrt(#σ)``;
   * ``texture``: per radius the LBP histogram (it sums to 1) L2-normalised, divided by ``sqrt(#radii)``;
   * ``filters``: the root-mean-square responses ``e`` soft-normalised ``e / sqrt(|e|² + filter_eps²)``.

   Each block is multiplied by its weight (``colour_weight`` ...).
5. **Patch feature**: the blocks of every context scale, concatenated in the order colour, gradient, texture, filters
   (scale by scale, ``context_sizes`` order), then L2-normalised. Its length is :meth:`AppearanceTeacherConfig.raw_dim`;
   :meth:`AppearanceTeacherConfig.block_slices` says where each block lies. The dataset-level PCA and the final
   re-normalisation are done by :func:`~jacobinerf_ns.teachers.cache.compute_teacher_features`.

:func:`appearance_descriptors` is the batched kernel, :func:`appearance_descriptors_reference` its plain-loop twin.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers.base import (
    GroundTruth,
    Teacher,
    TeacherConfig,
    TeacherError,
    l2_normalize,
    patch_grid_hw,
)

MAX_PIXELS_PER_PASS = 1 << 21
"""Working-resolution pixels per kernel call (~0.5 GB of float32 maps with the default options); larger batches are
split (memory only: the output does not change). One larger image still runs alone: set ``load_size`` for those."""
LBP_CODES = 10
"""Rotation-invariant uniform LBP with 8 neighbours: 0..8 set bits for uniform patterns, 9 for all others."""
BLOCKS = ("colour", "gradient", "texture", "filters")
"""Descriptor blocks, in the order they are concatenated within each context scale."""

# sRGB (D65) -> XYZ, as scikit-image's rgb2lab, and the D65 white point (2° observer)
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE = (0.95047, 1.0, 1.08883)
_LAB_EPS = (6.0 / 29.0) ** 3
_STD_EPS = 1e-3
"""The colour block's standard deviation is ``sqrt(var + eps²) − eps`` (in Lab/100 units): equal to the standard
deviation except within ~0.1 Lab unit of 0, where the plain square root would amplify rounding noise."""
# neighbours of the LBP ring in circular order (dy, dx) at unit chessboard distance
_RING = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


@dataclass
class AppearanceTeacherConfig(TeacherConfig):
    """Dense image descriptors (CIELAB colour, multi-scale oriented-gradient histograms, LBP and filter-bank
    texture) pooled onto a ViT-like patch grid; no weights, no ground truth (module docstring gives the rules)."""

    _target: type = field(default_factory=lambda: AppearanceTeacher)
    """Teacher class to instantiate."""
    name: str = "appearance"
    """Label of the teacher in results and cache files."""
    stride: int = 8
    """Pixels per patch at the working resolution (8, like a ViT-S/8)."""
    load_size: int | None = None
    """Resize so that the shorter side has this many pixels before extraction (large phone captures); None: as is."""
    pca_dim: int | None = 64
    """PCA (one basis fitted over the whole dataset) to this many dims, then re-normalise; None: keep raw_dim()."""
    context_sizes: tuple[int, ...] = (1, 3)
    """Context scales: each block is also pooled over the k x k patches around each patch (odd k; 1 = the patch)."""
    colour_weight: float = 3.0
    """Weight of the colour block (mean and standard deviation of CIELAB in the cell). Measured with
    benchmarks/teacher_speed.py (one-click nearest neighbour): 3 and 4 beat 0.5, 1 and 2 on the default jn-synth
    scene, and 3 beat 1 on the seed-1 scene."""
    colour_std_gain: float = 2.0
    """Gain on the CIELAB standard deviation relative to the mean colour inside the colour block."""
    gradient_weight: float = 1.0
    """Weight of the oriented-gradient (HOG / dense-SIFT-like) block."""
    gradient_sigmas: tuple[float, ...] = (1.0, 2.0)
    """Gaussian-derivative scales (pixels) of the gradient histograms."""
    num_orientations: int = 8
    """Unsigned orientation bins of the gradient histograms (over [0, pi))."""
    gradient_eps: float = 0.01
    """Soft-normalisation constant of the gradient histograms (mean gradient of L*/100 per pixel): cells with much
    weaker edges shrink towards 0, stronger ones reach unit length."""
    texture_weight: float = 1.0
    """Weight of the local-binary-pattern texture block."""
    lbp_radii: tuple[int, ...] = (1, 2)
    """Chessboard radii (pixels) of the 8-neighbour LBP rings."""
    lbp_threshold: float = 0.02
    """A neighbour sets its LBP bit when it is brighter than the centre by more than this (in L*/100)."""
    filter_weight: float = 1.0
    """Weight of the filter-bank energy block."""
    log_sigmas: tuple[float, ...] = (1.0, 2.0, 4.0)
    """Scales (pixels) of the scale-normalised Laplacian-of-Gaussian filters."""
    oriented_sigma: float = 2.0
    """Scale (pixels) of the oriented second-derivative filters."""
    num_filter_orientations: int = 4
    """Number of oriented second-derivative filters (directions k·pi/m); 0: none."""
    filter_eps: float = 0.02
    """Soft-normalisation constant of the filter-bank energies (root-mean-square response, L*/100 units)."""
    batch_size: int = 16
    """Images per batched extraction (memory / speed only)."""
    device: str | None = None
    """Torch device for extraction; None: the images' device (compute_teacher_features hands CPU images)."""

    non_feature_fields = ("show_progress", "batch_size", "device")

    def block_dims(self) -> dict[str, int]:
        """Length of each block within one context scale."""
        return {
            "colour": 6,
            "gradient": self.num_orientations * len(self.gradient_sigmas),
            "texture": LBP_CODES * len(self.lbp_radii),
            "filters": len(self.log_sigmas) + self.num_filter_orientations,
        }

    def block_slices(self) -> dict[str, list[slice]]:
        """Where each block lies in a raw feature: one slice per context scale (``context_sizes`` order)."""
        dims = self.block_dims()
        out: dict[str, list[slice]] = {name: [] for name in BLOCKS}
        start = 0
        for _ in self.context_sizes:
            for name in BLOCKS:
                out[name].append(slice(start, start + dims[name]))
                start += dims[name]
        return out

    def raw_dim(self) -> int:
        return len(self.context_sizes) * sum(self.block_dims().values())

    def check(self) -> None:
        label = f"appearance teacher '{self.name}'"
        if self.stride < 1:
            raise ConfigError(f"{label}: stride must be positive, got {self.stride}")
        if self.load_size is not None and self.load_size < self.stride:
            raise ConfigError(f"{label}: load_size {self.load_size} is smaller than one patch ({self.stride} px)")
        if not self.context_sizes or any(k < 1 or k % 2 == 0 for k in self.context_sizes):
            raise ConfigError(f"{label}: context_sizes must be odd positive integers, got {self.context_sizes}")
        if self.num_orientations < 2:
            raise ConfigError(f"{label}: num_orientations must be at least 2, got {self.num_orientations}")
        if self.num_filter_orientations < 0:
            raise ConfigError(f"{label}: num_filter_orientations must be >= 0, got {self.num_filter_orientations}")
        sigmas = (*self.gradient_sigmas, *self.log_sigmas, self.oriented_sigma)
        if not self.gradient_sigmas or any(not s > 0 for s in sigmas):
            raise ConfigError(f"{label}: gradient_sigmas (non-empty), log_sigmas and oriented_sigma must be > 0")
        if not self.lbp_radii or any(r < 1 for r in self.lbp_radii):
            raise ConfigError(f"{label}: lbp_radii must be positive integers, got {self.lbp_radii}")
        if not (self.log_sigmas or self.num_filter_orientations):
            raise ConfigError(f"{label}: the filter bank is empty (no log_sigmas, no oriented filters)")
        if not (self.gradient_eps > 0 and self.filter_eps > 0):
            raise ConfigError(f"{label}: gradient_eps and filter_eps must be > 0")
        if self.lbp_threshold < 0 or self.colour_std_gain < 0:
            raise ConfigError(f"{label}: lbp_threshold and colour_std_gain must be >= 0")
        weights = (self.colour_weight, self.gradient_weight, self.texture_weight, self.filter_weight)
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ConfigError(f"{label}: block weights must be >= 0 and not all 0, got {weights}")
        if self.batch_size < 1:
            raise ConfigError(f"{label}: batch_size must be positive, got {self.batch_size}")
        super().check()


# --------------------------------------------------------------------------------------------------- kernels


def rgb_to_lab(rgb: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b 3 H W"]:
    """sRGB in [0, 1] to CIELAB (D65), channels-first; matches ``skimage.color.rgb2lab``."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = torch.tensor(_XYZ_FROM_RGB, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ck,bkhw->bchw", matrix, linear) / white
    f = torch.where(xyz > _LAB_EPS, xyz.clamp_min(_LAB_EPS) ** (1.0 / 3.0), xyz / (3 * (6 / 29) ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


@functools.lru_cache(maxsize=64)
def gaussian_kernels(sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """1D float64 kernels ``(g, d1, d2)`` of radius ``ceil(3σ)`` for cross-correlation: ``g`` sums to 1; ``d1``
    answers 1 to the ramp ``x`` (a derivative), ``d2`` answers 0 to constants and 1 to ``x²/2``."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    d1 = x * g
    d1 = d1 / (x * d1).sum()
    d2 = (x**2 / sigma**4 - 1 / sigma**2) * g
    d2 = d2 - g * d2.sum()
    d2 = d2 / (0.5 * x**2 * d2).sum()
    return g, d1, d2


@functools.lru_cache(maxsize=4)
def riu2_table() -> Tensor:
    """LBP code (8 bits, bit k = ring neighbour k) → rotation-invariant uniform code (0..8 set bits, else 9)."""
    table = torch.empty(256, dtype=torch.long)
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
        table[code] = sum(bits) if transitions <= 2 else LBP_CODES - 1
    return table


@functools.lru_cache(maxsize=32)
def area_pool_matrix(n_in: int, n_out: int) -> Float[Tensor, "n_out n_in"]:
    """Float64 twin of :func:`jacobinerf_ns.teachers.synthetic.area_pool_matrix`: row ``i`` averages inputs
    ``[floor(i·n_in/n_out), ceil((i+1)·n_in/n_out))`` (adaptive average pooling's regions)."""
    out = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
        out[i, lo:hi] = 1.0 / (hi - lo)
    return out


def _correlate(x: Tensor, kernel: Tensor, axis: int) -> Tensor:
    """1D cross-correlation of ``(n, 1, H, W)`` along ``axis`` (3 = x, 2 = y) with replicate padding."""
    r = (kernel.numel() - 1) // 2
    k = kernel.to(x.device, x.dtype)
    if axis == 3:
        return F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


class _Derivatives:
    """Separable Gaussian derivatives of one lightness batch, sharing the horizontal passes."""

    def __init__(self, lightness: Tensor) -> None:
        self.ell = lightness
        self._rows: dict[tuple[float, int], Tensor] = {}

    def __call__(self, sigma: float, order_x: int, order_y: int) -> Tensor:
        kernels = gaussian_kernels(float(sigma))
        if (sigma, order_x) not in self._rows:
            self._rows[(sigma, order_x)] = _correlate(self.ell, kernels[order_x], 3)
        return _correlate(self._rows[(sigma, order_x)], kernels[order_y], 2)


def _orientation_histogram(gx: Tensor, gy: Tensor, bins: int) -> Tensor:
    """Magnitude soft-binned by unsigned orientation: ``(n, 1, H, W)`` gradients → ``(n, bins, H, W)``."""
    magnitude = torch.sqrt(gx * gx + gy * gy)
    u = torch.remainder(torch.atan2(gy, gx), math.pi) * (bins / math.pi)  # in [0, bins]
    centres = torch.arange(bins, dtype=gx.dtype, device=gx.device).view(1, -1, 1, 1)
    distance = (torch.remainder(u - centres + bins / 2, bins) - bins / 2).abs()
    return magnitude * (1.0 - distance).clamp_min(0.0)


def _lbp_codes(lightness: Tensor, radius: int, threshold: float) -> Tensor:
    """riu2 LBP code per pixel of ``(n, 1, H, W)`` lightness (replicate borders): ``(n, H, W)`` long."""
    _, _, height, width = lightness.shape
    padded = F.pad(lightness, (radius, radius, radius, radius), mode="replicate")
    code = torch.zeros(lightness.shape, dtype=torch.long, device=lightness.device)
    for bit, (dy, dx) in enumerate(_RING):
        y0, x0 = radius + dy * radius, radius + dx * radius
        neighbour = padded[:, :, y0 : y0 + height, x0 : x0 + width]
        code += (neighbour - lightness > threshold).long() << bit
    return riu2_table().to(lightness.device)[code[:, 0]]


def _pixel_maps(rgb: Tensor, cfg: AppearanceTeacherConfig) -> Tensor:
    """Every per-pixel map of step 1 for a ``(n, 3, H, W)`` batch: ``(n, C, H, W)``."""
    lab = rgb_to_lab(rgb) / 100.0
    ell = lab[:, :1]
    maps = [lab, lab * lab]
    deriv = _Derivatives(ell)
    for sigma in cfg.gradient_sigmas:
        maps.append(_orientation_histogram(deriv(sigma, 1, 0), deriv(sigma, 0, 1), cfg.num_orientations))
    for radius in cfg.lbp_radii:
        codes = _lbp_codes(ell, radius, cfg.lbp_threshold)
        maps.append(F.one_hot(codes, LBP_CODES).permute(0, 3, 1, 2).to(rgb.dtype))
    for sigma in cfg.log_sigmas:
        maps.append((sigma**2 * (deriv(sigma, 2, 0) + deriv(sigma, 0, 2))) ** 2)
    if cfg.num_filter_orientations:
        s = cfg.oriented_sigma
        dxx, dxy, dyy = deriv(s, 2, 0), deriv(s, 1, 1), deriv(s, 0, 2)
        for k in range(cfg.num_filter_orientations):
            angle = k * math.pi / cfg.num_filter_orientations
            c, sn = math.cos(angle), math.sin(angle)
            maps.append((s**2 * (c * c * dxx + 2 * c * sn * dxy + sn * sn * dyy)) ** 2)
    return torch.cat(maps, dim=1)


def _soft_normalize(v: Tensor, eps: float) -> Tensor:
    return v / torch.sqrt((v * v).sum(dim=-1, keepdim=True) + eps * eps)


def _blocks(cells: Tensor, cfg: AppearanceTeacherConfig) -> Tensor:
    """Step 4 on pooled maps ``(..., C)`` → the weighted blocks of one context scale ``(..., D / #scales)``."""
    mean, mean_sq = cells[..., :3], cells[..., 3:6]
    std = torch.sqrt((mean_sq - mean * mean).clamp_min(0.0) + _STD_EPS**2) - _STD_EPS
    colour = torch.cat([mean, cfg.colour_std_gain * std], dim=-1)
    at, n = 6, cfg.num_orientations
    hists = []
    for _ in cfg.gradient_sigmas:
        hists.append(_soft_normalize(cells[..., at : at + n], cfg.gradient_eps))
        at += n
    gradient = torch.cat(hists, dim=-1) / math.sqrt(len(hists))
    lbps = []
    for _ in cfg.lbp_radii:
        lbps.append(l2_normalize(cells[..., at : at + LBP_CODES]))
        at += LBP_CODES
    texture = torch.cat(lbps, dim=-1) / math.sqrt(len(lbps))
    energies = torch.sqrt(cells[..., at:].clamp_min(0.0))
    filters = _soft_normalize(energies, cfg.filter_eps)
    weights = (cfg.colour_weight, cfg.gradient_weight, cfg.texture_weight, cfg.filter_weight)
    return torch.cat([w * b for w, b in zip(weights, (colour, gradient, texture, filters), strict=True)], dim=-1)


def working_size(image_hw: tuple[int, int], load_size: int | None) -> tuple[int, int]:
    """Size at which the descriptors are computed (step 0)."""
    if load_size is None:
        return image_hw
    scale = load_size / min(image_hw)
    return max(1, round(image_hw[0] * scale)), max(1, round(image_hw[1] * scale))


def resize_batch(rgb: Float[Tensor, "b 3 H W"], load_size: int | None) -> Float[Tensor, "b 3 h w"]:
    """Step 0: bilinear antialiased resize so that the shorter side is ``load_size`` (None: unchanged)."""
    size = working_size((rgb.shape[2], rgb.shape[3]), load_size)
    if size == (rgb.shape[2], rgb.shape[3]):
        return rgb
    return F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)


def appearance_descriptors(
    images: Float[Tensor, "b H W 3"], cfg: AppearanceTeacherConfig, normalize: bool = True
) -> Float[Tensor, "b h w d"]:
    """The batched kernel (module docstring): raw patch descriptors on the images' device and in their dtype,
    L2-normalised (step 5) unless ``normalize`` is False (then the weighted blocks of step 4, for inspection)."""
    _, height, width, _ = images.shape
    grid = patch_grid_hw((height, width), cfg.stride, cfg.load_size)
    rgb = resize_batch(images.permute(0, 3, 1, 2), cfg.load_size)
    maps = _pixel_maps(rgb, cfg)
    pool_y = area_pool_matrix(maps.shape[2], grid[0]).to(maps.device, maps.dtype)
    pool_x = area_pool_matrix(maps.shape[3], grid[1]).to(maps.device, maps.dtype)
    cells = (pool_y @ maps) @ pool_x.T  # (b, C, h, w)
    scales = []
    for k in cfg.context_sizes:
        ctx = cells if k == 1 else F.avg_pool2d(cells, k, stride=1, padding=k // 2, count_include_pad=False)
        scales.append(_blocks(ctx.permute(0, 2, 3, 1), cfg))
    feats = torch.cat(scales, dim=-1)
    return l2_normalize(feats) if normalize else feats


def appearance_descriptors_reference(
    image: Float[Tensor, "H W 3"], cfg: AppearanceTeacherConfig
) -> Float[Tensor, "h w d"]:
    """Plain-loop twin of :func:`appearance_descriptors` for one image (slow: tests only, tiny images)."""
    height, width, _ = image.shape
    grid_h, grid_w = patch_grid_hw((height, width), cfg.stride, cfg.load_size)
    rgb = resize_batch(image.permute(2, 0, 1)[None], cfg.load_size)[0].permute(1, 2, 0)
    H, W, _ = rgb.shape
    dtype = rgb.dtype
    white = _WHITE

    def lab_of(pixel: list[float]) -> list[float]:
        lin = [((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92 for c in pixel]
        xyz = [sum(_XYZ_FROM_RGB[r][k] * lin[k] for k in range(3)) / white[r] for r in range(3)]
        f = [t ** (1 / 3) if t > _LAB_EPS else t / (3 * (6 / 29) ** 2) + 4 / 29 for t in xyz]
        return [(116 * f[1] - 16) / 100, 500 * (f[0] - f[1]) / 100, 200 * (f[1] - f[2]) / 100]

    values = rgb.tolist()
    lab = [[lab_of(values[y][x]) for x in range(W)] for y in range(H)]
    ell = [[lab[y][x][0] for x in range(W)] for y in range(H)]

    def at(y: int, x: int) -> float:  # replicate padding
        return ell[min(max(y, 0), H - 1)][min(max(x, 0), W - 1)]

    def filtered(sigma: float, order_x: int, order_y: int) -> list[list[float]]:
        kernels = gaussian_kernels(float(sigma))
        kx, ky = kernels[order_x].tolist(), kernels[order_y].tolist()
        r = (len(kx) - 1) // 2
        return [
            [
                sum(ky[j + r] * kx[i + r] * at(y + j, x + i) for j in range(-r, r + 1) for i in range(-r, r + 1))
                for x in range(W)
            ]
            for y in range(H)
        ]

    # per pixel (y, x): the list of its map values, appended group by group in the kernel's channel order
    pixel = [[[*lab[y][x], *(v * v for v in lab[y][x])] for x in range(W)] for y in range(H)]
    n = cfg.num_orientations
    for sigma in cfg.gradient_sigmas:
        gx, gy = filtered(sigma, 1, 0), filtered(sigma, 0, 1)
        for y in range(H):
            for x in range(W):
                hist = [0.0] * n
                mag = math.hypot(gx[y][x], gy[y][x])
                u = math.fmod(math.atan2(gy[y][x], gx[y][x]) + 2 * math.pi, math.pi) * n / math.pi
                k0 = math.floor(u)
                frac = u - k0
                hist[k0 % n] += (1 - frac) * mag
                hist[(k0 + 1) % n] += frac * mag
                pixel[y][x] += hist
    for radius in cfg.lbp_radii:
        for y in range(H):
            for x in range(W):
                bits = [int(at(y + dy * radius, x + dx * radius) - ell[y][x] > cfg.lbp_threshold) for dy, dx in _RING]
                transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
                code = sum(bits) if transitions <= 2 else LBP_CODES - 1
                pixel[y][x] += [float(code == c) for c in range(LBP_CODES)]
    responses = []
    for sigma in cfg.log_sigmas:
        xx, yy = filtered(sigma, 2, 0), filtered(sigma, 0, 2)
        responses.append([[sigma**2 * (xx[y][x] + yy[y][x]) for x in range(W)] for y in range(H)])
    s = cfg.oriented_sigma
    if cfg.num_filter_orientations:
        xx, xy, yy = filtered(s, 2, 0), filtered(s, 1, 1), filtered(s, 0, 2)
        for k in range(cfg.num_filter_orientations):
            angle = k * math.pi / cfg.num_filter_orientations
            c, sn = math.cos(angle), math.sin(angle)
            responses.append(
                [
                    [s**2 * (c * c * xx[y][x] + 2 * c * sn * xy[y][x] + sn * sn * yy[y][x]) for x in range(W)]
                    for y in range(H)
                ]
            )
    for resp in responses:
        for y in range(H):
            for x in range(W):
                pixel[y][x].append(resp[y][x] ** 2)

    def bounds(i: int, n_in: int, n_out: int) -> range:
        return range((i * n_in) // n_out, -(-(i + 1) * n_in // n_out))

    num_maps = len(pixel[0][0])
    cells = [[[0.0] * num_maps for _ in range(grid_w)] for _ in range(grid_h)]
    for i in range(grid_h):
        for j in range(grid_w):
            ys, xs = bounds(i, H, grid_h), bounds(j, W, grid_w)
            for y in ys:
                for x in xs:
                    for c in range(num_maps):
                        cells[i][j][c] += pixel[y][x][c] / (len(ys) * len(xs))
    cell_tensor = torch.tensor(cells, dtype=dtype)
    out = []
    for k in cfg.context_sizes:
        ctx = torch.zeros_like(cell_tensor)
        for i in range(grid_h):
            for j in range(grid_w):
                near = [
                    cell_tensor[a, b]
                    for a in range(i - k // 2, i + k // 2 + 1)
                    for b in range(j - k // 2, j + k // 2 + 1)
                    if 0 <= a < grid_h and 0 <= b < grid_w
                ]
                ctx[i, j] = torch.stack(near).mean(dim=0)
        out.append(_blocks_reference(ctx, cfg))
    feats = torch.cat(out, dim=-1)
    return feats / feats.norm(dim=-1, keepdim=True)


def _blocks_reference(cells: Tensor, cfg: AppearanceTeacherConfig) -> Tensor:
    """Step 4 for each cell separately, written out (the twin of :func:`_blocks`)."""
    h, w, _ = cells.shape
    rows = []
    weights = (cfg.colour_weight, cfg.gradient_weight, cfg.texture_weight, cfg.filter_weight)
    for i in range(h):
        for j in range(w):
            v = cells[i, j].tolist()
            mean, mean_sq = v[0:3], v[3:6]
            colour = mean + [
                cfg.colour_std_gain * (math.sqrt(max(q - m * m, 0.0) + _STD_EPS**2) - _STD_EPS)
                for m, q in zip(mean, mean_sq, strict=True)
            ]
            at = 6
            gradient = []
            for _ in cfg.gradient_sigmas:
                hist = v[at : at + cfg.num_orientations]
                at += cfg.num_orientations
                norm = math.sqrt(sum(x * x for x in hist) + cfg.gradient_eps**2)
                gradient += [x / norm / math.sqrt(len(cfg.gradient_sigmas)) for x in hist]
            texture = []
            for _ in cfg.lbp_radii:
                hist = v[at : at + LBP_CODES]
                at += LBP_CODES
                norm = math.sqrt(sum(x * x for x in hist))
                texture += [x / norm / math.sqrt(len(cfg.lbp_radii)) for x in hist]
            energies = [math.sqrt(max(x, 0.0)) for x in v[at:]]
            norm = math.sqrt(sum(x * x for x in energies) + cfg.filter_eps**2)
            filters = [x / norm for x in energies]
            blocks = (colour, gradient, texture, filters)
            rows.append([wt * x for wt, block in zip(weights, blocks, strict=True) for x in block])
    return torch.tensor(rows, dtype=cells.dtype).view(h, w, -1)


# --------------------------------------------------------------------------------------------------- teacher


class AppearanceTeacher(Teacher):
    """Dense appearance descriptors from the RGB image alone (module docstring); never reads ground truth."""

    config: AppearanceTeacherConfig
    is_synthetic = False
    requires_ground_truth = False

    @property
    def stride(self) -> int:
        return self.config.stride

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    def grid_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        return patch_grid_hw(image_hw, self.stride, self.config.load_size)

    def _checked(self, image: Tensor, index: int, image_hw: tuple[int, int] | None) -> Tensor:
        t = torch.as_tensor(image)
        if t.ndim != 3 or t.shape[-1] != 3:
            raise TeacherError(f"teacher '{self.name}', image {index}: shape {tuple(t.shape)}, expected (H, W, 3)")
        if image_hw is not None and tuple(t.shape[:2]) != image_hw:
            raise TeacherError(
                f"teacher '{self.name}', image {index}: size {tuple(t.shape[:2])} differs from the batch's {image_hw}"
            )
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t
        if not t.is_floating_point():
            raise TeacherError(f"teacher '{self.name}', image {index}: dtype {t.dtype}, expected float or uint8")
        if not bool(torch.isfinite(t).all()):
            raise TeacherError(f"teacher '{self.name}', image {index}: the image contains NaN or inf")
        lo, hi = float(t.min()), float(t.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise TeacherError(
                f"teacher '{self.name}', image {index}: values span [{lo:.3g}, {hi:.3g}], expected [0, 1]"
            )
        return t.clamp(0.0, 1.0)

    def extract_many(
        self, images: list[Tensor], indices: list[int], gts: list[GroundTruth | None]
    ) -> list[Float[Tensor, "h w d"]]:
        """Descriptors of a batch of same-size images (``gts`` is ignored); float32 on the CPU."""
        if not images:
            return []
        first = self._checked(images[0], indices[0], None)
        hw = (int(first.shape[0]), int(first.shape[1]))
        rest = [self._checked(im, i, hw) for im, i in zip(images[1:], indices[1:], strict=True)]
        batch = torch.stack([first, *rest])
        device = torch.device(self.config.device) if self.config.device is not None else batch.device
        work_h, work_w = working_size(hw, self.config.load_size)
        chunk = max(1, MAX_PIXELS_PER_PASS // (work_h * work_w))  # bounds the per-pixel maps' memory
        out: list[Tensor] = []
        with torch.no_grad():
            for start in range(0, len(batch), chunk):
                part = batch[start : start + chunk].to(device, torch.float32)
                out += list(appearance_descriptors(part, self.config).cpu().unbind(0))
        return out

    def extract(self, image: Float[Tensor, "H W 3"], index: int, gt: GroundTruth | None) -> Float[Tensor, "h w d"]:
        return self.extract_many([image], [index], [gt])[0]
