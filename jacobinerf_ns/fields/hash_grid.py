"""Multiresolution hash-grid encoding (instant-NGP), fast on the CPU, tiny-cuda-nn when present.

Conventions (the torch kernel, its reference twin and the tcnn configuration all follow them):

* **Levels.** ``L`` levels with growth factor ``b = exp((ln max_res - ln base_res) / (L - 1))`` (``b = 1`` when
  ``L == 1``). Level ``l`` has the tiny-cuda-nn *scale* ``s_l = base_res * b**l - 1`` and tiny-cuda-nn *resolution*
  ``res_l = ceil(s_l) + 1`` (so the finest level has ``max_res`` vertices per axis, as in tcnn). Scales are computed in
  float64 and snapped to an integer when within 1e-9 (relative) of one, so that rounding noise such as
  ``2047.0000000000032`` does not add a vertex; tcnn computes them in float32, which can only differ from ours when
  ``s_l`` is within float32 rounding of an integer.
* **Positions.** Inputs ``x`` live in ``[0, 1]^3``; anything outside is clamped to the cube first (the caller masks
  such points; clamping only keeps indices valid), so the gradient w.r.t. ``x`` is zero strictly outside the cube.
  Per level ``p = x * s_l + 0.5`` (computed as a multiply then an add, in the table's dtype), the cell is
  ``g = floor(p)`` and the interpolation fraction ``f = p - g``. The half-cell offset is tcnn's: it staggers the
  levels so that their vertices do not line up (instant-NGP, appendix A).
* **Corners.** The 8 corners are ``g + (bx, by, bz)`` with bits ``b* in {0, 1}``; corner ``c = bx + 2 by + 4 bz``
  (tcnn's bit order). Weights are trilinear: ``w_c = prod_d (f_d if b_d else 1 - f_d)``. Corner coordinates lie in
  ``[0, res_l]``, i.e. ``res_l + 1`` vertices per axis.
* **Dense levels.** A level whose full vertex grid fits in the table, ``(res_l + 1)**3 <= T`` with
  ``T = 2**log2_hashmap_size``, is stored densely with ``(res_l + 1)**3`` rows and indexed
  ``x + y * S + z * S**2`` with ``S = res_l + 1`` (x fastest, like tcnn). This is collision-free. tcnn instead uses
  stride ``res_l`` and a table of ``res_l**3`` rows (rounded up to a multiple of 8), so the half-cell offset makes its
  top face wrap around onto the next row; we do not copy that quirk.
* **Hashed levels.** Every other level has ``T`` rows and the instant-NGP spatial hash
  ``((x * 1) xor (y * 2654435761) xor (z * 805459861)) mod T``. tcnn evaluates it in wrapping uint32 arithmetic;
  because ``T`` is a power of two, ``mod T`` keeps only the low bits, which wrapping (int32 here) and exact (int64,
  the reference) arithmetic agree on, so the index is identical to tcnn's.
* **Table.** One parameter ``table`` of shape ``(rows, F)``: level ``l`` owns rows
  ``[offset_l, offset_l + size_l)`` (see :func:`hash_grid_layout`). It is initialised ``uniform(-init_scale,
  init_scale)`` (tcnn uses ``1e-4``) and its dtype follows the module (``.double()`` works). The layout differs from
  tcnn's flat ``params`` vector (dense levels have a different size), so checkpoints do not move between the two
  implementations.
* **Output.** ``(*bs, L * F)``, level-major: column ``l * F + k`` is feature ``k`` of level ``l`` (tcnn's order).

* **Gradients.** W.r.t. the table: the trilinear weights scattered onto the 8 corner rows. W.r.t. ``x``: the
  derivative of the interpolant of the cell that contains the point (``floor`` picks the upper cell on a boundary,
  so the derivative there is one-sided), times ``s_l``; zero outside the cube (``torch.clamp`` semantics, which let
  the gradient through at exactly 0 and 1). Higher-order gradients (``create_graph=True``) are correct but go
  through the slow reference.

Speed (2-core CPU, ``benchmarks/hash_grid.py``): a custom autograd function works level by level on chunks of
points laid out ``(corner bits, point)``, so that every elementwise op runs over long contiguous rows; index math is
int32; all scratch tensors are allocated once per call and reused for every level and chunk (fresh multi-megabyte
temporaries cost more in page faults than the arithmetic, and a chunk's buffers stay in cache); feature pairs are
gathered and scattered as single complex numbers (one 1-D ``index_select`` / ``index_add_`` per level and chunk, the
fastest gather and scatter torch has on the CPU). The backward pass recomputes the cheap corner rows and weights
instead of saving them and scatters ``weight * grad`` with ``index_add_``; nothing of size ``points x levels x 8``
outlives a call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from nerfstudio.field_components.encodings import Encoding
from torch import Tensor, nn

from jacobinerf_ns.fields.backend import Implementation, resolve_implementation

__all__ = [
    "HASH_PRIMES",
    "HashGridEncoding",
    "HashGridLayout",
    "HashGridLevel",
    "dense_index",
    "hash_grid_encode",
    "hash_grid_encode_reference",
    "hash_grid_layout",
    "level_growth_factor",
    "level_index",
    "level_resolutions",
    "level_scales",
    "spatial_hash",
]

HASH_PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)
"""Per-axis multipliers of the instant-NGP spatial hash (x, y, z)."""

DEFAULT_CHUNK_SIZE = 32768
"""Points per inner step of the kernel; its scratch memory is about 300 bytes per point of a chunk."""


# ---------------------------------------------------------------------------------------------------------------------
# Level geometry and indexing helpers
# ---------------------------------------------------------------------------------------------------------------------


def level_growth_factor(num_levels: int, base_resolution: int, max_resolution: int) -> float:
    """Per-level scale factor ``b = exp((ln max_res - ln base_res) / (L - 1))`` (1 for a single level)."""
    if num_levels <= 1:
        return 1.0
    return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))


def level_scales(num_levels: int, base_resolution: int, max_resolution: int) -> list[float]:
    """tcnn's per-level position scale ``s_l = base_res * b**l - 1``, snapped to an integer when within 1e-9 of it."""
    b = level_growth_factor(num_levels, base_resolution, max_resolution)
    scales = []
    for level in range(num_levels):
        s = base_resolution * b**level - 1.0
        scales.append(float(round(s)) if abs(s - round(s)) <= 1e-9 * max(1.0, s) else s)
    return scales


def level_resolutions(num_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """tcnn's per-level grid resolution ``res_l = ceil(s_l) + 1`` (vertices per axis, ignoring the half-cell offset)."""
    return [math.ceil(s) + 1 for s in level_scales(num_levels, base_resolution, max_resolution)]


@dataclass(frozen=True)
class HashGridLevel:
    """Geometry and table placement of one level."""

    scale: float
    """Position scale ``s_l``: grid coordinates are ``x * scale + 0.5``."""
    resolution: int
    """tcnn resolution ``ceil(scale) + 1``; corner coordinates lie in ``[0, resolution]``."""
    dense: bool
    """True when the level is stored densely (collision-free), False when it is hashed."""
    stride: int
    """Vertices per axis of the dense grid, ``resolution + 1`` (only used when ``dense``)."""
    offset: int
    """First table row of the level."""
    size: int
    """Number of table rows of the level: ``stride**3`` when dense, else the hash-map size."""


@dataclass(frozen=True)
class HashGridLayout:
    """All levels of one encoding and the total table size."""

    levels: tuple[HashGridLevel, ...]
    hashmap_size: int
    """``T = 2**log2_hashmap_size``: rows of a hashed level, and the bound on a dense level's rows."""

    @property
    def num_rows(self) -> int:
        """Rows of the whole table."""
        last = self.levels[-1]
        return last.offset + last.size

    @property
    def num_levels(self) -> int:
        return len(self.levels)


def hash_grid_layout(
    num_levels: int, log2_hashmap_size: int, base_resolution: int, max_resolution: int
) -> HashGridLayout:
    """Level scales, dense/hashed choice and table offsets (see the module docstring for the conventions)."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if not 1 <= log2_hashmap_size <= 30:
        raise ValueError(f"log2_hashmap_size must be in [1, 30], got {log2_hashmap_size}")
    if base_resolution < 1 or max_resolution < base_resolution:
        raise ValueError(f"need 1 <= base_resolution <= max_resolution, got {base_resolution}, {max_resolution}")
    hashmap_size = 2**log2_hashmap_size
    levels = []
    offset = 0
    for scale in level_scales(num_levels, base_resolution, max_resolution):
        resolution = math.ceil(scale) + 1
        stride = resolution + 1
        dense = stride**3 <= hashmap_size
        size = stride**3 if dense else hashmap_size
        levels.append(HashGridLevel(scale, resolution, dense, stride, offset, size))
        offset += size
    return HashGridLayout(tuple(levels), hashmap_size)


def spatial_hash(coords: Int[Tensor, "*bs 3"], hashmap_size: int) -> Int[Tensor, "*bs"]:
    """instant-NGP hash ``((x * 1) xor (y * 2654435761) xor (z * 805459861)) mod hashmap_size``, exact in int64."""
    c = coords.long()
    h = (c[..., 0] * HASH_PRIMES[0]) ^ (c[..., 1] * HASH_PRIMES[1]) ^ (c[..., 2] * HASH_PRIMES[2])
    return h % hashmap_size


def dense_index(coords: Int[Tensor, "*bs 3"], stride: int) -> Int[Tensor, "*bs"]:
    """Row of a vertex in a dense level: ``x + y * stride + z * stride**2`` (x fastest)."""
    c = coords.long()
    return c[..., 0] + c[..., 1] * stride + c[..., 2] * (stride * stride)


def level_index(coords: Int[Tensor, "*bs 3"], level: HashGridLevel, hashmap_size: int) -> Int[Tensor, "*bs"]:
    """Row (within the level) of integer vertex coordinates: dense index or spatial hash."""
    return dense_index(coords, level.stride) if level.dense else spatial_hash(coords, hashmap_size)


# ---------------------------------------------------------------------------------------------------------------------
# Reference implementation: slow, obviously correct, differentiable by plain autograd
# ---------------------------------------------------------------------------------------------------------------------


def hash_grid_encode_reference(
    x: Float[Tensor, "*bs 3"], table: Float[Tensor, "rows F"], layout: HashGridLayout
) -> Float[Tensor, "*bs out_dim"]:
    """Python loops over levels and the 8 corners with explicit int64 hashing; same conventions as the fast kernel."""
    x = x.to(table.dtype).clamp(0.0, 1.0)
    outputs = []
    for level in layout.levels:
        rows = table[level.offset : level.offset + level.size]
        pos = x * level.scale + 0.5
        cell = torch.floor(pos)
        frac = pos - cell
        cell = cell.long()
        acc = torch.zeros(*x.shape[:-1], table.shape[1], dtype=table.dtype, device=table.device)
        for corner in range(8):
            bits = [(corner >> d) & 1 for d in range(3)]
            coords = cell + torch.tensor(bits, device=x.device)
            idx = level_index(coords, level, layout.hashmap_size)
            factors = [frac[..., d] if bits[d] else 1 - frac[..., d] for d in range(3)]
            weight = (factors[2] * factors[1]) * factors[0]
            acc = acc + weight[..., None] * rows[idx]
        outputs.append(acc)
    return torch.cat(outputs, dim=-1)


# ---------------------------------------------------------------------------------------------------------------------
# Fast kernel
# ---------------------------------------------------------------------------------------------------------------------


def _complex_rows(table: Tensor) -> bool:
    """Gather/scatter feature pairs as complex numbers (exactly the same adds and multiplies, half the elements)."""
    return table.shape[-1] % 2 == 0 and table.dtype in (torch.float32, torch.float64) and table.is_contiguous()


def _as_rows(t: Tensor, complex_rows: bool) -> Tensor:
    """View ``(..., F)`` features as rows: complex ``(...,)`` for F == 2, ``(..., F/2)`` complex, or real."""
    f = t.shape[-1]
    if complex_rows:
        r = torch.view_as_complex(t.unflatten(-1, (f // 2, 2)))
        return r.squeeze(-1) if f == 2 else r
    return t.squeeze(-1) if f == 1 else t


class _Kernel:
    """Per-call state of the fast kernel: table rows, per-level constants and reusable scratch buffers.

    Points are processed level by level in chunks of up to ``chunk`` points, laid out ``(corner bits..., point)`` with
    the point index fastest so that every elementwise op runs over long contiguous rows. All scratch tensors are
    allocated once per call and reused for every level and chunk: fresh multi-megabyte temporaries cost more in page
    faults than the arithmetic, and a chunk's buffers stay in cache.
    """

    def __init__(self, x: Tensor, table: Tensor, layout: HashGridLayout, chunk_size: int):
        self.layout = layout
        self.n_total = x.shape[0]
        self.chunk = max(1, min(chunk_size, self.n_total))
        self.complex_rows = _complex_rows(table)
        self.rows = _as_rows(table, self.complex_rows)
        self.row_shape = tuple(self.rows.shape[1:])
        self.xt = x.t().contiguous()
        dtype, device = table.dtype, table.device
        index_dtype = torch.int32 if layout.num_rows < 2**31 else torch.int64
        wrap = 2**32 if index_dtype == torch.int32 else 0  # int32 products keep the low bits of tcnn's uint32 ones
        self.multipliers = [
            torch.tensor(
                [1, level.stride, level.stride**2] if level.dense else [1, HASH_PRIMES[1] - wrap, HASH_PRIMES[2]],
                dtype=index_dtype,
                device=device,
            ).view(1, 3, 1)
            for level in layout.levels
        ]
        self.one = torch.ones((), dtype=dtype, device=device)
        m, rs = self.chunk, math.prod(self.row_shape)

        def buf(k: int, dt: torch.dtype = dtype) -> Tensor:
            return torch.empty(k * m, dtype=dt, device=device)

        self._buffers = {
            "pos": buf(3),
            "wf": buf(6),
            "cell": buf(6, index_dtype),
            "czy": buf(4, index_dtype),
            "index": buf(8, index_dtype),
            "wzy": buf(4),
            "weight": buf(8),
            "gathered": buf(8 * rs, self.rows.dtype),
        }
        # Complex rows are scaled by complex weights w + 0i: complex * complex is much faster than complex * real in
        # torch, and multiplying by w + 0i rounds exactly like scaling both parts by w.
        self._buffers["weight_rows"] = buf(8, self.rows.dtype) if self.rows.is_complex() else self._buffers["weight"]
        self._views: dict[int, dict[str, Tensor]] = {}

    def chunks(self):
        """``(start, n)`` of every chunk of points."""
        return ((start, min(self.chunk, self.n_total - start)) for start in range(0, self.n_total, self.chunk))

    def views(self, n: int) -> dict[str, Tensor]:
        """The scratch buffers viewed for a chunk of ``n`` points (built once per chunk size)."""
        if n not in self._views:
            rs = self.row_shape

            def view(name: str, *shape: int) -> Tensor:
                return self._buffers[name][: math.prod(shape)].view(shape)

            v = {
                "pos": view("pos", 3, n),
                "wf": view("wf", 2, 3, n),  # [bit, axis, point]: (1 - f, f)
                "cell": view("cell", 2, 3, n),  # [bit, axis, point]: (g + bit) * multiplier
                "czy": view("czy", 2, 2, n),  # [z bit, y bit, point]
                "index": view("index", 2, 2, 2, n),  # [z bit, y bit, x bit, point]
                "wzy": view("wzy", 2, 2, n),
                "weight": view("weight", 2, 2, 2, n),
                "weight_rows": view("weight_rows", 8, n).view((8, n) + (1,) * len(rs)),
                "gathered": self._buffers["gathered"][: 8 * n * math.prod(rs)].view((8 * n,) + rs),
            }
            wf, cell, wzy = v["wf"], v["cell"], v["wzy"]
            # operand views of the broadcasting ops below, sliced once
            v["cz_cy"] = (cell[:, None, 2], cell[None, :, 1])  # (2, 1, n), (1, 2, n)
            v["czy_cx"] = (v["czy"][:, :, None], cell[None, None, :, 0])  # (2, 2, 1, n), (1, 1, 2, n)
            v["wz_wy"] = (wf[:, None, 2], wf[None, :, 1])
            v["wzy_wx"] = (wzy[:, :, None], wf[None, None, :, 0])
            self._views[n] = v
        return self._views[n]

    def corners(self, li: int, start: int, n: int) -> dict[str, Tensor]:
        """Rows (``index``) and trilinear weights (``weight``, ``weight_rows``) of the 8 corners of level ``li`` for
        points ``start : start + n``; valid until the next call."""
        level, v = self.layout.levels[li], self.views(n)
        pos, wf, cell = v["pos"], v["wf"], v["cell"]
        torch.mul(self.xt[:, start : start + n], level.scale, out=pos)
        pos.add_(0.5)
        torch.frac(pos, out=wf[1])  # pos >= 0.5, so frac and truncation are the floor's
        torch.sub(self.one, wf[1], out=wf[0])
        cell[0].copy_(pos)
        torch.add(cell[0], 1, out=cell[1])
        cell.mul_(self.multipliers[li])
        if level.dense:
            torch.add(*v["cz_cy"], out=v["czy"])
            torch.add(*v["czy_cx"], out=v["index"])
        else:
            cell.bitwise_and_(self.layout.hashmap_size - 1)
            torch.bitwise_xor(*v["cz_cy"], out=v["czy"])
            torch.bitwise_xor(*v["czy_cx"], out=v["index"])
        torch.mul(*v["wz_wy"], out=v["wzy"])
        torch.mul(*v["wzy_wx"], out=v["weight"])
        if self.complex_rows:
            v["weight_rows"].view(2, 2, 2, n).copy_(v["weight"])  # a vectorised cast; imaginary parts are 0
        return v

    def level_rows(self, li: int, rows: Tensor) -> Tensor:
        level = self.layout.levels[li]
        return rows[level.offset : level.offset + level.size]


def _encode_forward(x: Tensor, table: Tensor, layout: HashGridLayout, chunk_size: int) -> Tensor:
    n_total, num_levels, f = x.shape[0], layout.num_levels, table.shape[1]
    out = torch.empty(n_total, num_levels, f, dtype=table.dtype, device=table.device)
    if n_total == 0:
        return out.view(0, num_levels * f)
    k = _Kernel(x, table, layout, chunk_size)
    out_rows = _as_rows(out, k.complex_rows)
    for li in range(num_levels):
        level_rows = k.level_rows(li, k.rows)
        for start, n in k.chunks():
            v = k.corners(li, start, n)
            gathered = torch.index_select(level_rows, 0, v["index"].view(-1), out=v["gathered"])
            product = gathered.view((8, n) + k.row_shape).mul_(v["weight_rows"])
            torch.sum(product, 0, out=out_rows[start : start + n, li])
    return out.view(n_total, num_levels * f)


def _encode_backward(
    x: Tensor, table: Tensor, grad_out: Tensor, layout: HashGridLayout, chunk_size: int, need_x: bool, need_table: bool
) -> tuple[Tensor | None, Tensor | None]:
    n_total, num_levels, f = x.shape[0], layout.num_levels, table.shape[1]
    grad_table = torch.zeros_like(table) if need_table else None
    grad_x = torch.zeros_like(x) if need_x else None
    if n_total == 0:
        return grad_x, grad_table
    k = _Kernel(x, table, layout, chunk_size)
    g_rows_all = _as_rows(grad_out.contiguous().view(n_total, num_levels, f), k.complex_rows)
    grad_rows = _as_rows(grad_table, k.complex_rows) if need_table else None
    for li in range(num_levels):
        for start, n in k.chunks():
            v = k.corners(li, start, n)
            g_rows = g_rows_all[start : start + n, li]
            if need_table:
                src = v["gathered"].view((8, n) + k.row_shape)
                torch.mul(v["weight_rows"], g_rows[None], out=src)
                k.level_rows(li, grad_rows).index_add_(0, v["index"].view(-1), v["gathered"])
            if need_x:
                grad_x[start : start + n].add_(_level_grad_x(k, li, v, g_rows, n), alpha=layout.levels[li].scale)
    return grad_x, grad_table


def _level_grad_x(k: _Kernel, li: int, v: dict[str, Tensor], g_rows: Tensor, n: int) -> Tensor:
    """d(level output . grad)/d(grid position) for ``n`` points, ``(n, 3)`` (rarely needed: clarity over speed)."""
    vals = k.level_rows(li, k.rows).index_select(0, v["index"].view(-1)).view((2, 2, 2, n) + k.row_shape)
    dots = (vals * g_rows.conj()).real if k.complex_rows else vals * g_rows
    d = dots.sum(-1) if dots.dim() == 5 else dots  # [z, y, x, point]
    wx, wy, wz = v["wf"][:, 0], v["wf"][:, 1], v["wf"][:, 2]  # [bit, point]
    gx = ((d[:, :, 1] - d[:, :, 0]) * (wz[:, None] * wy[None, :])).sum((0, 1))
    gy = ((d[:, 1] - d[:, 0]) * (wz[:, None] * wx[None, :])).sum((0, 1))
    gz = ((d[1] - d[0]) * (wy[:, None] * wx[None, :])).sum((0, 1))
    return torch.stack([gx, gy, gz], dim=-1)


class _HashGridFunction(torch.autograd.Function):
    """Fast forward; the backward recomputes the corners and scatters ``weight * grad`` with ``index_add_``."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, layout: HashGridLayout, chunk_size: int) -> Tensor:
        ctx.layout, ctx.chunk_size = layout, chunk_size
        ctx.save_for_backward(x, table)
        return _encode_forward(x, table, layout, chunk_size)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, table = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():
            # create_graph=True (double backward): differentiate the reference instead, with plain autograd.
            return _reference_grads(x, table, grad_out, ctx.layout, need_x, need_table)
        grad_x, grad_table = _encode_backward(x, table, grad_out, ctx.layout, ctx.chunk_size, need_x, need_table)
        return grad_x, grad_table, None, None


def _reference_grads(
    x: Tensor, table: Tensor, grad_out: Tensor, layout: HashGridLayout, need_x: bool, need_table: bool
) -> tuple[Tensor | None, Tensor | None, None, None]:
    """First derivatives through the differentiable reference, so higher-order gradients are correct (and slow)."""
    inputs = [t for t, need in ((x, need_x), (table, need_table)) if need]
    out = hash_grid_encode_reference(x, table, layout)
    grads = list(torch.autograd.grad(out, inputs, grad_out, create_graph=True, allow_unused=True))
    grad_x = grads.pop(0) if need_x else None
    grad_table = grads.pop(0) if need_table else None
    return grad_x, grad_table, None, None


def hash_grid_encode(
    x: Float[Tensor, "*bs 3"],
    table: Float[Tensor, "rows F"],
    layout: HashGridLayout,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Float[Tensor, "*bs out_dim"]:
    """Fast multiresolution hash-grid encoding of ``x`` (clamped to ``[0, 1]^3``) with ``table``.

    Differentiable w.r.t. ``table`` and ``x``; computed in ``table``'s dtype (``x`` is cast to it). Matches
    :func:`hash_grid_encode_reference` to rounding. ``chunk_size`` points are processed per inner step.
    """
    if x.shape[-1] != 3:
        raise ValueError(f"expected points of shape (..., 3), got {tuple(x.shape)}")
    if table.dim() != 2 or table.shape[0] != layout.num_rows:
        raise ValueError(f"table has shape {tuple(table.shape)} but the layout needs ({layout.num_rows}, F)")
    batch_shape = x.shape[:-1]
    flat = x.reshape(-1, 3).to(table.dtype).clamp(0.0, 1.0).contiguous()
    out = _HashGridFunction.apply(flat, table, layout, chunk_size)
    return out.view(*batch_shape, out.shape[-1])


# ---------------------------------------------------------------------------------------------------------------------
# Module
# ---------------------------------------------------------------------------------------------------------------------


class HashGridEncoding(Encoding):
    """Multiresolution hash-grid encoding of points in ``[0, 1]^3`` (instant-NGP).

    Args:
        num_levels: Number of resolution levels ``L``.
        features_per_level: Features per level ``F``; the output has ``L * F`` channels.
        log2_hashmap_size: log2 of the rows ``T`` of a hashed level.
        base_resolution: Resolution of the coarsest level.
        max_resolution: Resolution of the finest level.
        implementation: ``"tcnn"`` (tiny-cuda-nn, CUDA only), ``"torch"`` (this module's kernel) or ``"auto"``
            (tcnn when tinycudann imports and CUDA is available, else torch). Decided at construction.
        init_scale: Table entries start uniform in ``[-init_scale, init_scale]``.
        chunk_size: Points per inner step of the torch kernel (bounds its scratch memory).
    """

    def __init__(
        self,
        num_levels: int = 16,
        features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        implementation: Implementation = "auto",
        init_scale: float = 1e-4,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(in_dim=3)
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = base_resolution
        self.max_resolution = max_resolution
        self.chunk_size = chunk_size
        self.layout = hash_grid_layout(num_levels, log2_hashmap_size, base_resolution, max_resolution)
        self.implementation_used: str = resolve_implementation(implementation)
        self.tcnn_encoding: nn.Module | None = None
        if self.implementation_used == "tcnn":
            import tinycudann as tcnn

            config = {
                "otype": "HashGrid",
                "n_levels": num_levels,
                "n_features_per_level": features_per_level,
                "log2_hashmap_size": log2_hashmap_size,
                "base_resolution": base_resolution,
                "per_level_scale": level_growth_factor(num_levels, base_resolution, max_resolution),
            }
            self.tcnn_encoding = tcnn.Encoding(n_input_dims=3, encoding_config=config)
            with torch.no_grad():
                self.tcnn_encoding.params.uniform_(-init_scale, init_scale)
        else:
            table = torch.empty(self.layout.num_rows, features_per_level).uniform_(-init_scale, init_scale)
            self.table = nn.Parameter(table)

    def get_out_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def forward(self, in_tensor: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs out_dim"]:
        if self.tcnn_encoding is not None:
            flat = in_tensor.reshape(-1, 3).float().clamp(0.0, 1.0)
            out = self.tcnn_encoding(flat).float()  # tcnn returns half precision on CUDA
            return out.view(*in_tensor.shape[:-1], self.get_out_dim())
        return hash_grid_encode(in_tensor, self.table, self.layout, self.chunk_size)

    def extra_repr(self) -> str:
        dense = sum(level.dense for level in self.layout.levels)
        return (
            f"levels={self.num_levels} ({dense} dense), features_per_level={self.features_per_level}, "
            f"log2_hashmap_size={self.log2_hashmap_size}, resolution={self.base_resolution}..{self.max_resolution}, "
            f"rows={self.layout.num_rows}, implementation={self.implementation_used}"
        )
