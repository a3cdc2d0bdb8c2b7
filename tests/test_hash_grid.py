"""The multiresolution hash-grid encoding: fast kernel vs the slow reference, gradients, layout and module API."""

from __future__ import annotations

import itertools
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from jacobinerf_ns.fields.hash_grid import (  # noqa: E402
    HASH_PRIMES,
    HashGridEncoding,
    dense_index,
    hash_grid_encode,
    hash_grid_encode_reference,
    hash_grid_layout,
    level_growth_factor,
    level_resolutions,
    spatial_hash,
)

# (num_levels, log2_hashmap_size, base_resolution, max_resolution) and the expected dense/hashed pattern
CONFIGS = {
    "dense-only": ((3, 14, 4, 16), [True, True, True]),
    "hashed-only": ((3, 8, 8, 32), [False, False, False]),
    "mixed": ((6, 12, 4, 128), [True, True, False, False, False, False]),
}


def _points(n: int, layout, seed: int) -> torch.Tensor:
    """Random points plus the awkward ones: the cube's corners, exact cell boundaries, points outside the cube."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    grid = torch.tensor(list(itertools.product([0.0, 0.5, 1.0], repeat=3)), dtype=torch.float64)
    # x = (k - 0.5) / s puts a coordinate (up to rounding) on a cell boundary of that level; mix levels and axes
    boundary = []
    for level in layout.levels:
        k = torch.randint(1, int(level.scale) + 1, (8, 3), generator=gen).double()
        b = torch.rand(8, 3, generator=gen, dtype=torch.float64)
        mask = torch.rand(8, 3, generator=gen) < 0.5
        boundary.append(torch.where(mask, (k - 0.5) / level.scale, b))
    outside = torch.tensor([[-0.3, 0.5, 0.2], [1.2, -1.0, 0.7], [0.4, 1.5, 2.0]], dtype=torch.float64)
    return torch.cat([x, grid, *boundary, outside])


@pytest.mark.parametrize("features", [2, 1, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_matches_reference_float64(name: str, features: int, device: torch.device) -> None:
    cfg, dense_pattern = CONFIGS[name]
    layout = hash_grid_layout(*cfg)
    assert [level.dense for level in layout.levels] == dense_pattern  # the config really exercises what it says
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(layout.num_rows, features, generator=gen, dtype=torch.float64).to(device)
    x = _points(300, layout, seed=2).to(device)

    x_fast, t_fast = x.clone().requires_grad_(), table.clone().requires_grad_()
    x_ref, t_ref = x.clone().requires_grad_(), table.clone().requires_grad_()
    out_fast = hash_grid_encode(x_fast, t_fast, layout, chunk_size=97)  # several chunks, the last one partial
    out_ref = hash_grid_encode_reference(x_ref, t_ref, layout)
    assert out_fast.shape == (x.shape[0], cfg[0] * features)
    assert out_fast.dtype == torch.float64
    assert (out_fast - out_ref).abs().max().item() <= 1e-10

    weights = torch.randn(out_fast.shape, generator=gen, dtype=torch.float64).to(device)  # a random linear functional
    gx_fast, gt_fast = torch.autograd.grad((out_fast * weights).sum(), [x_fast, t_fast])
    gx_ref, gt_ref = torch.autograd.grad((out_ref * weights).sum(), [x_ref, t_ref])
    assert (gt_fast - gt_ref).abs().max().item() <= 1e-10
    assert gt_ref.abs().max().item() > 0.1
    # x gradients scale with the finest resolution; compare relative to their size
    scale = max(1.0, gx_ref.abs().max().item())
    assert (gx_fast - gx_ref).abs().max().item() <= 1e-10 * scale
    assert gx_ref.abs().max().item() > 1.0
    outside = (x < 0) | (x > 1)
    assert outside.any() and (gx_fast[outside] == 0).all()

    # the training path (only the table needs a gradient), with the default chunk size
    t_only = table.clone().requires_grad_()
    (gt_only,) = torch.autograd.grad((hash_grid_encode(x, t_only, layout) * weights).sum(), [t_only])
    assert (gt_only - gt_ref).abs().max().item() <= 1e-10
    x_only = x.clone().requires_grad_()
    (gx_only,) = torch.autograd.grad((hash_grid_encode(x_only, table, layout) * weights).sum(), [x_only])
    assert (gx_only - gx_ref).abs().max().item() <= 1e-10 * scale


def test_gradcheck_tiny() -> None:
    layout = hash_grid_layout(2, 6, 2, 4)  # one dense and one hashed level, 91 rows
    assert [level.dense for level in layout.levels] == [True, False]
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(layout.num_rows, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    x = (0.05 + 0.9 * torch.rand(6, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: hash_grid_encode(a, b, layout), (x, table), eps=1e-6, atol=1e-7)


def test_double_backward_through_reference() -> None:
    layout = hash_grid_layout(2, 4, 2, 4)  # two hashed levels of 16 rows
    gen = torch.Generator().manual_seed(4)
    table = torch.randn(layout.num_rows, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    x = (0.05 + 0.9 * torch.rand(2, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda a, b: hash_grid_encode(a, b, layout), (x, table), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("cfg", [(3, 14, 4, 16), (16, 19, 16, 2048), (12, 15, 16, 512)])
def test_dense_levels_are_collision_free(cfg) -> None:
    layout = hash_grid_layout(*cfg)
    dense_levels = [level for level in layout.levels if level.dense]
    assert dense_levels
    for level in dense_levels:
        assert level.size == (level.resolution + 1) ** 3 <= layout.hashmap_size
        axis = torch.arange(level.resolution + 1)  # every corner coordinate the kernel can produce
        coords = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        rows = dense_index(coords, level.stride)
        assert torch.equal(torch.sort(rows).values, torch.arange(level.size))  # distinct corners -> distinct rows
    for level in layout.levels:
        if not level.dense:
            assert (level.resolution + 1) ** 3 > layout.hashmap_size and level.size == layout.hashmap_size


def test_dense_vertex_rows_in_fast_kernel() -> None:
    """With a table holding its own row numbers, the kernel evaluated at a vertex reads that vertex's dense row."""
    layout = hash_grid_layout(3, 14, 4, 16)
    table = torch.arange(layout.num_rows, dtype=torch.float64)[:, None]
    gen = torch.Generator().manual_seed(6)
    for li, level in enumerate(layout.levels):
        vertices = torch.randint(1, int(level.scale) + 1, (50, 3), generator=gen)
        x = (vertices.double() - 0.5) / level.scale  # grid position x * s + 0.5 lands on the vertex
        out = hash_grid_encode(x, table, layout)[:, li]
        expected = (dense_index(vertices, level.stride) + level.offset).double()
        assert torch.allclose(out, expected, rtol=0, atol=1e-8)
        assert len(set(expected.tolist())) == len(set(map(tuple, vertices.tolist())))


def test_spatial_hash_matches_uint32_semantics() -> None:
    coords = torch.tensor([[1, 2, 3], [2048, 2047, 1], [0, 0, 0], [123456, 7, 99999]])
    size = 2**19
    got = spatial_hash(coords, size)
    for c, h in zip(coords.tolist(), got.tolist(), strict=True):
        u32 = 0
        for value, prime in zip(c, HASH_PRIMES, strict=True):
            u32 ^= (value * prime) & 0xFFFFFFFF  # tcnn: wrapping uint32 products
        assert h == u32 % size


def test_layout_geometry() -> None:
    assert level_growth_factor(1, 16, 16) == 1.0
    assert level_growth_factor(16, 16, 2048) == pytest.approx(128 ** (1 / 15))
    res = level_resolutions(16, 16, 2048)
    assert res[0] == 16 and res[-1] == 2048 and res == sorted(res)
    layout = hash_grid_layout(16, 19, 16, 2048)
    spans = sorted((level.offset, level.offset + level.size) for level in layout.levels)
    assert spans[0][0] == 0 and spans[-1][1] == layout.num_rows  # the levels tile the table without overlap
    assert all(end == next_start for (_, end), (next_start, _) in zip(spans[:-1], spans[1:], strict=True))
    assert layout.num_rows == sum(level.size for level in layout.levels) < 16 * 2**19
    with pytest.raises(ValueError):
        hash_grid_layout(4, 31, 16, 512)


def test_auto_resolves_to_what_this_machine_has() -> None:
    from jacobinerf_ns.fields.backend import tcnn_available

    enc = HashGridEncoding(num_levels=2, log2_hashmap_size=8, max_resolution=32, implementation="auto")
    assert enc.implementation_used == ("tcnn" if tcnn_available() else "torch")


def test_module_out_dim_and_batch_shapes() -> None:
    enc = HashGridEncoding(
        num_levels=5,
        features_per_level=3,
        log2_hashmap_size=10,
        base_resolution=4,
        max_resolution=64,
        implementation="torch",  # the torch kernel's table; tcnn keeps its own flat parameter vector
    )
    assert enc.implementation_used == "torch"
    assert enc.get_out_dim() == 15
    assert enc.table.shape == (enc.layout.num_rows, 3)
    assert enc.table.abs().max().item() <= 1e-4 and enc.table.std().item() > 0
    x = torch.rand(2, 3, 4, 3)
    out = enc(x)
    assert out.shape == (2, 3, 4, 15) and out.dtype == torch.float32
    assert torch.equal(out.reshape(-1, 15), enc(x.reshape(-1, 3)))
    assert enc(torch.rand(0, 3)).shape == (0, 15)
    assert enc(torch.rand(7, 0, 3)).shape == (7, 0, 15)


def test_bad_shapes_are_rejected() -> None:
    layout = hash_grid_layout(2, 6, 2, 4)
    with pytest.raises(ValueError, match="shape"):
        hash_grid_encode(torch.rand(4, 2), torch.zeros(layout.num_rows, 2), layout)
    with pytest.raises(ValueError, match="layout"):
        hash_grid_encode(torch.rand(4, 3), torch.zeros(layout.num_rows + 1, 2), layout)


def test_tcnn_requested_without_tcnn_is_one_clear_error(monkeypatch) -> None:
    from jacobinerf_ns.fields import backend

    monkeypatch.setattr(backend, "tcnn_available", lambda: False)  # the same answer on machines with tcnn
    with pytest.raises(ValueError) as info:
        HashGridEncoding(num_levels=2, log2_hashmap_size=8, max_resolution=32, implementation="tcnn")
    message = str(info.value)
    assert "tcnn" in message and "tinycudann" in message and "\n" not in message


def test_float32_module_matches_float64_reference_and_trains() -> None:
    torch.manual_seed(5)
    enc = HashGridEncoding(
        num_levels=8,
        log2_hashmap_size=12,
        base_resolution=8,
        max_resolution=256,
        implementation="torch",
        init_scale=1.0,
    )
    x = torch.rand(500, 3)
    out = enc(x)
    ref = hash_grid_encode_reference(x.double(), enc.table.detach().double(), enc.layout)
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max().item() < 1e-4
    target = torch.randn_like(out)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = ((enc(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert enc.table.grad is not None and torch.isfinite(enc.table.grad).all()
    assert losses[-1] < losses[0]


def test_double_module_and_clamping() -> None:
    enc = HashGridEncoding(
        num_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32, implementation="torch", init_scale=1.0
    ).double()
    assert enc.table.dtype == torch.float64
    x = torch.tensor([[-0.5, 0.3, 1.7], [0.0, 0.3, 1.0]], dtype=torch.float64, requires_grad=True)
    out = enc(x)
    assert out.dtype == torch.float64
    assert torch.equal(out[0], out[1])  # outside points are clamped to the cube
    (grad,) = torch.autograd.grad(out[0].sum(), x)
    assert grad[0, 0] == 0 and grad[0, 2] == 0 and grad[0, 1] != 0
