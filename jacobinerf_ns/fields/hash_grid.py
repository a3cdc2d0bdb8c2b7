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

Speed notes (2-core CPU; see ``benchmarks/hash_grid.py``): the kernel works level by level on points laid out as
``(8 corners, n points)`` so that every elementwise op runs over long contiguous rows; index math is int32; all
scratch tensors come from one workspace that is reused across levels and chunks (fresh multi-megabyte temporaries
cost more in page faults than the arithmetic itself); feature pairs are gathered and scattered as single complex
numbers (one 1-D ``index_select`` / ``index_add_`` per level, which are the fastest gather/scatter torch has on the
CPU); and a custom autograd function recomputes the cheap corner indices and weights in the backward pass instead
of saving them, then scatters ``weight * grad`` with one ``index_add_`` per level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from nerfstudio.field_components.encodings import Encoding
from torch import Tensor, nn

from jacobinerf_ns.fields.backend import Implementation, resolve_implementation

HASH_PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)
"""Per-axis multipliers of the instant-NGP spatial hash (x, y, z)."""

DEFAULT_CHUNK_SIZE = 16384
"""Points per inner step: the scratch buffers (about 360 bytes per point) then stay in cache."""


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
    return table.shape[-1] % 2 == 0 and table.dtype in (torch.float32, torch.float64)


def _as_rows(t: Tensor, complex_rows: bool) -> Tensor:
    """View ``(..., F)`` features as rows: complex ``(...,)`` for F == 2, ``(..., F/2)`` complex, or real."""
    f = t.shape[-1]
    if complex_rows:
        r = torch.view_as_complex(t.unflatten(-1, (f // 2, 2)))
        return r.squeeze(-1) if f == 2 else r
    return t.squeeze(-1) if f == 1 else t


class _Workspace:
    """Scratch buffers for up to ``n`` points, reused across levels and chunks (allocated once per call)."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device, index_dtype: torch.dtype, rows: Tensor):
        def buf(k: int, dt: torch.dtype = dtype) -> Tensor:
            return torch.empty(k * n, dtype=dt, device=device)

        self.pos, self.floor, self.frac = buf(3), buf(3), buf(6)
        self.wzy, self.weight = buf(4), buf(8)
        self.cell, self.czy, self.index = buf(6, index_dtype), buf(4, index_dtype), buf(8, index_dtype)
        self.row_shape = tuple(rows.shape[1:])
        row_numel = math.prod(self.row_shape)
        self.weight_c = buf(8, rows.dtype) if rows.is_complex() else None
        self.gathered = buf(8 * row_numel, rows.dtype)
        self.product = buf(8 * row_numel, rows.dtype)


def _level_corners(
    xt: Tensor, level: HashGridLevel, hashmap_size: int, ws: _Workspace, n: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Corner rows ``(2, 2, 2, n)`` [z, y, x], weights ``(2, 2, 2, n)`` and ``[1 - f, f]`` ``(2, 3, n)`` for ``xt``.

    Everything is written into the workspace, so the results are only valid until the next call.
    """
    pos = ws.pos[: 3 * n].view(3, n)
    flo = ws.floor[: 3 * n].view(3, n)
    frac = ws.frac[: 6 * n].view(2, 3, n)
    cell = ws.cell[: 6 * n].view(2, 3, n)
    czy = ws.czy[: 4 * n].view(2, 2, n)
    index = ws.index[: 8 * n].view(2, 2, 2, n)
    torch.mul(xt, level.scale, out=pos)
    pos.add_(0.5)
    torch.floor(pos, out=flo)
    torch.sub(pos, flo, out=frac[1])
    torch.neg(frac[1], out=frac[0]).add_(1.0)
    cell[0].copy_(flo)
    torch.add(cell[0], 1, out=cell[1])
    if level.dense:
        cell[:, 1] *= level.stride
        cell[:, 2] *= level.stride * level.stride
        torch.add(cell[:, 2, None], cell[None, :, 1], out=czy)
        torch.add(czy[:, :, None], cell[None, None, :, 0], out=index)
    else:
        wrap = 2**32 if cell.dtype == torch.int32 else 0  # int32: the same low bits as tcnn's wrapping uint32 product
        cell[:, 1] *= HASH_PRIMES[1] - wrap
        cell[:, 2] *= HASH_PRIMES[2]
        cell &= hashmap_size - 1
        torch.bitwise_xor(cell[:, 2, None], cell[None, :, 1], out=czy)
        torch.bitwise_xor(czy[:, :, None], cell[None, None, :, 0], out=index)
    wzy = ws.wzy[: 4 * n].view(2, 2, n)
    weight = ws.weight[: 8 * n].view(2, 2, 2, n)
    torch.mul(frac[:, 2, None], frac[None, :, 1], out=wzy)
    torch.mul(wzy[:, :, None], frac[None, None, :, 0], out=weight)
    if ws.weight_c is not None:
        weight = ws.weight_c[: 8 * n].view(2, 2, 2, n).copy_(weight)
    return index, weight, frac


def _prepare(x: Tensor, table: Tensor, layout: HashGridLayout, chunk_size: int):
    n_total = x.shape[0]
    chunk = max(1, min(chunk_size, n_total))
    complex_rows = _complex_rows(table)
    rows = _as_rows(table, complex_rows)
    index_dtype = torch.int32 if layout.num_rows < 2**31 else torch.int64
    ws = _Workspace(chunk, table.dtype, table.device, index_dtype, rows)
    xt = x.t().contiguous()
    return chunk, complex_rows, rows, ws, xt


def _bshape(n: int, row_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (8, n) + (1,) * len(row_shape)


def _encode_forward(x: Tensor, table: Tensor, layout: HashGridLayout, chunk_size: int) -> Tensor:
    n_total, num_levels, f = x.shape[0], layout.num_levels, table.shape[1]
    out = torch.empty(n_total, num_levels, f, dtype=table.dtype, device=table.device)
    if n_total == 0:
        return out.view(0, num_levels * f)
    chunk, complex_rows, rows, ws, xt = _prepare(x, table, layout, chunk_size)
    out_rows = _as_rows(out, complex_rows)
    rs = ws.row_shape
    for li, level in enumerate(layout.levels):
        level_rows = rows[level.offset : level.offset + level.size]
        for start in range(0, n_total, chunk):
            n = min(chunk, n_total - start)
            index, weight, _ = _level_corners(xt[:, start : start + n], level, layout.hashmap_size, ws, n)
            gathered = ws.gathered[: 8 * n * math.prod(rs)].view((8 * n,) + rs)
            torch.index_select(level_rows, 0, index.view(-1), out=gathered)
            product = ws.product[: 8 * n * math.prod(rs)].view((8, n) + rs)
            torch.mul(gathered.view((8, n) + rs), weight.view(_bshape(n, rs)), out=product)
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
    chunk, complex_rows, rows, ws, xt = _prepare(x, table, layout, chunk_size)
    g_rows_all = _as_rows(grad_out.contiguous().view(n_total, num_levels, f), complex_rows)
    grad_rows = _as_rows(grad_table, complex_rows) if need_table else None
    rs = ws.row_shape
    for li, level in enumerate(layout.levels):
        sl = slice(level.offset, level.offset + level.size)
        for start in range(0, n_total, chunk):
            n = min(chunk, n_total - start)
            index, weight, frac = _level_corners(xt[:, start : start + n], level, layout.hashmap_size, ws, n)
            g_rows = g_rows_all[start : start + n, li]
            if need_table:
                src = ws.product[: 8 * n * math.prod(rs)].view((8, n) + rs)
                torch.mul(weight.view(_bshape(n, rs)), g_rows[None], out=src)
                grad_rows[sl].index_add_(0, index.view(-1), src.view((8 * n,) + rs))
            if need_x:
                vals = rows[sl].index_select(0, index.view(-1)).view((8, n) + rs)
                dots = (vals * g_rows.conj()[None]).real if complex_rows else vals * g_rows[None]
                if dots.dim() == 3:
                    dots = dots.sum(-1)
                d = dots.view(2, 2, 2, n)  # [z, y, x]
                wx, wy, wz = frac[:, 0], frac[:, 1], frac[:, 2]
                gx = ((d[:, :, 1] - d[:, :, 0]) * (wz[:, None] * wy[None, :])).sum((0, 1))
                gy = ((d[:, 1] - d[:, 0]) * (wz[:, None] * wx[None, :])).sum((0, 1))
                gz = ((d[1] - d[0]) * (wy[:, None] * wx[None, :])).sum((0, 1))
                grad_x[start : start + n].add_(torch.stack([gx, gy, gz], dim=-1), alpha=level.scale)
    return grad_x, grad_table


class _HashGridFunction(torch.autograd.Function):
    """Fast forward; backward recomputes corners and scatters ``weight * grad`` with one ``index_add_`` per level."""

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

    Differentiable w.r.t. ``table`` and ``x``; computed in ``table``'s dtype. Matches
    :func:`hash_grid_encode_reference` to rounding.
    """
    if table.shape[0] != layout.num_rows:
        raise ValueError(f"table has {table.shape[0]} rows but the layout needs {layout.num_rows}")
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
            flat = in_tensor.reshape(-1, 3).clamp(0.0, 1.0)
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
