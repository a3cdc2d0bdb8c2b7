"""The GSNeRF family's math kernels against their loop references and against hand-made geometry."""

from __future__ import annotations

import math

import pytest
import torch

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.gen import reference as ref
from jacobinerf_ns.gen.attention import masked_attention, sample_maps, sample_volume
from jacobinerf_ns.gen.cost_volume import (
    group_correlation,
    inverse_depth_planes,
    plane_sweep_warp,
    refine_planes,
    soft_argmin,
    variance_cost,
)
from jacobinerf_ns.gen.geometry import (
    backproject,
    camera_rays,
    invert_pose,
    opencv_to_opengl,
    opengl_to_opencv,
    project,
    scale_intrinsics,
)
from jacobinerf_ns.gen.reprojection import reproject_depth
from jacobinerf_ns.gen.sampler import guided_samples


def intr(f: float, w: int, h: int, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=dtype)


def pose(yaw_deg: float = 0.0, t=(0.0, 0.0, 0.0), pitch_deg: float = 0.0, dtype=torch.float64) -> torch.Tensor:
    """OpenCV camera-to-world: rotation about the camera's y (yaw) and x (pitch) axes, then translation."""
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=dtype)
    rx = torch.tensor([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]], dtype=dtype)
    m = torch.eye(4, dtype=dtype)
    m[:3, :3] = ry @ rx
    m[:3, 3] = torch.tensor(t, dtype=dtype)
    return m


# ------------------------------------------------------------------------------------------------------ geometry
def test_projection_inverts_backprojection_and_gl_round_trip(device):
    k = intr(20.0, 32, 24).to(device)
    c2w = pose(12, (0.3, -0.1, 0.2), 5).to(device)
    depth = 1.0 + torch.rand(24, 32, dtype=torch.float64, device=device)
    pts = backproject(depth, k, c2w)
    uv, z = project(pts, k, invert_pose(c2w))
    v, u = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    assert torch.allclose(uv[..., 0].cpu(), u.double() + 0.5) and torch.allclose(uv[..., 1].cpu(), v.double() + 0.5)
    assert torch.allclose(z, depth)
    assert torch.allclose(opengl_to_opencv(opencv_to_opengl(c2w)), c2w)
    o, d = camera_rays(uv, k, c2w)
    assert torch.allclose(o + depth[..., None] * d, pts)


# -------------------------------------------------------------------------------------------------- reprojection
@pytest.mark.parametrize(("window", "blur"), [(0, False), (1, True)])
def test_reproject_depth_matches_reference(device, window, blur):
    g = torch.Generator().manual_seed(3)
    h, w = 6, 8
    k = intr(6.0, w, h)
    src_c2w = torch.stack([pose(-8, (-0.2, 0, 0)), pose(10, (0.25, 0.05, 0))])
    depth = 1.5 + torch.rand(2, h, w, generator=g, dtype=torch.float64)
    depth[0, 0, :3] = 0.0  # invalid source pixels
    tgt = pose(3, (0.05, 0.0, -0.4))
    args = (depth, k.expand(2, 3, 3), src_c2w, k, tgt, h, w)
    kw = {"window": window, "tolerance": 0.1, "fill_iters": 1, "blur": blur}
    got, valid = reproject_depth(*(a.to(device) if torch.is_tensor(a) else a for a in args), **kw)
    want, want_valid = ref.reproject_depth_reference(*args, **kw)
    assert torch.equal(valid.cpu(), want_valid)
    assert torch.allclose(got.cpu(), want, rtol=1e-10, atol=1e-10)
    if window == 0:
        assert 0 < int(valid.sum()) < h * w  # the case exercises both points and holes


def test_reproject_plane_two_cameras_known_depth(device):
    """A fronto-parallel plane z = 2 m seen by one camera; a second camera, moved and turned, must see the plane's
    analytic depth (ray-plane intersection) wherever the first camera covered it."""
    h, w = 36, 48
    k = intr(24.0, w, h)
    src = pose()
    tgt = pose(8.0, (0.3, -0.1, 0.2))
    depth = torch.full((1, h, w), 2.0, dtype=torch.float64)
    got, valid = reproject_depth(
        depth.to(device), k[None].to(device), src[None].to(device), k.to(device), tgt.to(device), h, w, blur=True
    )
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    o, d = camera_rays(torch.stack([u, v], -1).double(), k, tgt)
    t = (2.0 - o[..., 2]) / d[..., 2]  # z-depth in the target: its unnormalised rays have unit camera z
    inner = valid.cpu().clone()
    inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False
    inner &= torch.nn.functional.max_pool2d((~valid).float().cpu()[None, None], 5, 1, 2)[0, 0] == 0
    assert int(inner.sum()) > 0.5 * h * w
    rel = ((got.cpu() - t).abs() / t)[inner]
    assert float(rel.max()) < 3e-3, float(rel.max())
    assert float(((got.cpu() - t).abs() / t)[~valid.cpu()].mean()) < 0.5  # filled holes stay plausible


def test_reproject_z_buffer_keeps_the_near_surface(device):
    """Two source views at the same pose: one sees a wall at 4 m, the other only a square at 2 m. Whatever the
    order, the target (same pose) must see 2 m on the square: the official last-writer splat gives 4 or a mix."""
    h, w = 20, 20
    k = intr(12.0, w, h)
    far = torch.full((h, w), 4.0, dtype=torch.float64)
    near = torch.zeros(h, w, dtype=torch.float64)
    near[6:14, 6:14] = 2.0
    c2w = pose().expand(2, 4, 4)
    outs = []
    for stack in (torch.stack([far, near]), torch.stack([near, far])):
        d, _ = reproject_depth(
            stack.to(device), k.expand(2, 3, 3).to(device), c2w.to(device), k.to(device), pose().to(device), h, w,
            blur=False,
        )  # fmt: skip
        outs.append(d.cpu())
    assert torch.equal(outs[0], outs[1])
    assert torch.allclose(outs[0][6:14, 6:14], torch.tensor(2.0, dtype=torch.float64))
    ring = torch.ones(h, w, dtype=torch.bool)
    ring[5:15, 5:15] = False
    assert torch.allclose(outs[0][ring], torch.tensor(4.0, dtype=torch.float64))


def test_reproject_depth_bad_shapes():
    k = intr(6.0, 8, 6)
    with pytest.raises(ConfigError, match="intrinsics"):
        reproject_depth(torch.ones(2, 6, 8), k.float()[None], pose().float().expand(2, 4, 4), k.float(), pose(), 6, 8)


# --------------------------------------------------------------------------------------------------- cost volume
def _random_views(n: int, dtype=torch.float64):
    src = torch.stack([pose(-6 + 5 * i, (0.15 * (i - 1), 0.03 * i, 0.02)) for i in range(n)])
    return src.to(dtype)


def test_plane_sweep_warp_and_costs_match_reference(device):
    g = torch.Generator().manual_seed(1)
    n, c, hs, ws = 2, 4, 6, 8
    h, w = 3, 4  # the reference level is half the feature resolution
    full = (12, 16)
    feat = torch.randn(n, c, hs, ws, generator=g, dtype=torch.float64)
    k_full = intr(10.0, full[1], full[0])
    ref_k = scale_intrinsics(k_full, w / full[1])
    depths = refine_planes(torch.full((h, w), 2.0, dtype=torch.float64), 3, 0.05, 0.5, 8.0)
    depths = depths + 0.1 * torch.rand(3, h, w, generator=g, dtype=torch.float64)
    args = (feat, k_full.expand(n, 3, 3), _random_views(n), ref_k, pose(2, (0.05, 0, 0)), depths, full)
    warped, valid = plane_sweep_warp(*(a.to(device) if torch.is_tensor(a) else a for a in args))
    want_w, want_v = ref.plane_sweep_warp_reference(*args)
    assert torch.equal(valid.cpu(), want_v)
    assert torch.allclose(warped.cpu(), want_w, atol=1e-10)
    ref_feat = torch.randn(c, h, w, generator=g, dtype=torch.float64)
    valid = valid.clone()
    valid[0, 0, 0, 0] = False  # a point only one neighbour sees
    valid[:, 1, 1, 1] = False  # and one nobody sees
    gc = group_correlation(ref_feat.to(device), warped, valid.to(device), groups=2)
    assert torch.allclose(gc.cpu(), ref.group_correlation_reference(ref_feat, warped.cpu(), valid.cpu(), 2))
    var = variance_cost(ref_feat.to(device), warped, valid.to(device))
    assert torch.allclose(var.cpu(), ref.variance_cost_reference(ref_feat, warped.cpu(), valid.cpu()))


def _texture(x: torch.Tensor, y: torch.Tensor, channels: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    freq = 3.0 + 9.0 * torch.rand(channels, 2, generator=g, dtype=torch.float64)
    phase = 6.28 * torch.rand(channels, generator=g, dtype=torch.float64)
    return torch.stack([torch.sin(freq[i, 0] * x + phase[i]) * torch.cos(freq[i, 1] * y) for i in range(channels)])


def _render_plane(k: torch.Tensor, c2w: torch.Tensor, h: int, w: int, plane_z: float, channels: int) -> torch.Tensor:
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    o, d = camera_rays(torch.stack([u, v], -1).double(), k, c2w)
    t = (plane_z - o[..., 2]) / d[..., 2]
    p = o + t[..., None] * d
    return _texture(p[..., 0], p[..., 1], channels)


@pytest.mark.parametrize("cost", ["correlation", "variance"])
def test_cost_volume_recovers_fronto_parallel_plane(device, cost):
    h, w, c, plane = 24, 32, 8, 2.5
    k = intr(16.0, w, h)
    ref_pose = pose()
    nbr = torch.stack([pose(0, (0.3, 0, 0)), pose(0, (-0.25, 0.1, 0)), pose(-4, (0.1, -0.2, 0.05))])
    feats = torch.stack([_render_plane(k, p, h, w, plane, c) for p in nbr])
    ref_feat = _render_plane(k, ref_pose, h, w, plane, c)
    planes = inverse_depth_planes(1.0, 6.0, 48, dtype=torch.float64)
    depths = planes.view(-1, 1, 1).expand(-1, h, w).contiguous()
    warped, valid = plane_sweep_warp(
        feats.to(device), k.expand(3, 3, 3).to(device), nbr.to(device), k.to(device), ref_pose.to(device),
        depths.to(device), (h, w),
    )  # fmt: skip
    if cost == "correlation":
        unit = lambda f, dim: f / f.norm(dim=dim, keepdim=True).clamp(min=1e-9)  # noqa: E731
        logits = 200.0 * group_correlation(unit(ref_feat, 0).to(device), unit(warped, 1), valid, groups=1)[0]
    else:
        logits = -200.0 * variance_cost(ref_feat.to(device), warped, valid).mean(dim=0)
    depth, prob = soft_argmin(logits, depths.to(device))
    inner = depth[4:-4, 4:-4].cpu()
    assert abs(float(inner.median()) - plane) < 0.03 * plane
    assert float((inner - plane).abs().lt(0.1 * plane).float().mean()) > 0.9
    assert torch.allclose(prob.sum(0).cpu(), torch.ones(h, w, dtype=torch.float64))


def test_depth_planes():
    p = inverse_depth_planes(0.5, 8.0, 5)
    assert torch.allclose(p[[0, -1]], torch.tensor([0.5, 8.0])) and bool((p.diff() > 0).all())
    assert torch.allclose((1 / p).diff(), (1 / p).diff()[0].expand(4), atol=1e-6)
    d = torch.tensor([[0.6, 2.0, 7.9]])
    r = refine_planes(d, 4, 0.1, 0.5, 8.0)  # (4, 1, 3)
    assert bool((r.diff(dim=0) > 0).all()) and float(r.min()) >= 0.5 - 1e-6 and float(r.max()) <= 8.0 + 1e-5
    assert torch.allclose((1 / r).diff(dim=0), torch.tensor(-0.1), atol=1e-5)
    mid = 1 / r[:, 0, 1]
    assert abs(float(mid.mean()) - 0.5) < 1e-5  # centred on 1/2 m^-1 away from the bounds
    with pytest.raises(ConfigError):
        inverse_depth_planes(2.0, 1.0, 4)


# ------------------------------------------------------------------------------------------------------- sampler
def test_guided_samples_eval_matches_reference_and_train_properties():
    depth = torch.tensor([0.1, 1.0, 2.5, 9.0], dtype=torch.float64)
    got = guided_samples(depth, 0.3, 8.0, 6, 4, 0.5, train=False)
    assert torch.allclose(got, ref.guided_samples_reference(depth, 0.3, 8.0, 6, 4, 0.5))
    g = torch.Generator().manual_seed(0)
    z = guided_samples(depth.float(), 0.3, 8.0, 8, 4, 0.5, train=True, generator=g)
    assert z.shape == (4, 12) and bool((z.diff(dim=1) >= 0).all())
    assert float(z.min()) >= 0.3 and float(z.max()) <= 8.0
    centre = depth.float().clamp(0.3, 8.0)
    assert bool(((z - centre[:, None]).abs().min(dim=1).values < 1e-6).all())  # one sample exactly at the depth
    only = guided_samples(torch.full((4000,), 3.0), 0.3, 8.0, 0, 2, 0.5, train=True, generator=g)
    other = torch.where((only[:, 0] - 3.0).abs() < 1e-7, only[:, 1], only[:, 0])
    assert abs(float(other.std()) - 0.5) < 0.03 and abs(float(other.mean()) - 3.0) < 0.03
    with pytest.raises(ConfigError):
        guided_samples(depth, 0.3, 8.0, 0, 0, 0.5, train=False)


# ----------------------------------------------------------------------------------------------------- attention
def test_masked_attention_matches_reference_values_and_gradients(device):
    g = torch.Generator().manual_seed(5)
    b, heads, t, d = 3, 2, 5, 4
    q, k, v = (torch.randn(b, heads, t, d, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(b, t, generator=g) > 0.4
    mask[0] = False  # no allowed key: attends to all
    mask[1, 0] = True
    tensors = [x.clone().to(device).requires_grad_(True) for x in (q, k, v)]
    out = masked_attention(*tensors, mask.to(device))
    refs = [x.clone().requires_grad_(True) for x in (q, k, v)]
    want = ref.masked_attention_reference(*refs, mask)
    assert torch.allclose(out.cpu(), want, atol=1e-12)
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * weights.to(device)).sum().backward()
    (want * weights).sum().backward()
    for a, r in zip(tensors, refs, strict=True):
        assert torch.allclose(a.grad.cpu(), r.grad, atol=1e-10)
    masked_out = [j for j in range(t) if not bool(mask[2, j])]
    if masked_out:  # a masked key gets no gradient through its value
        assert float(tensors[2].grad[2, :, masked_out].abs().max()) == 0.0


def test_sample_maps_matches_reference(device):
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(2, 3, 6, 8, generator=g, dtype=torch.float64)
    uv = torch.rand(2, 7, 2, generator=g, dtype=torch.float64) * torch.tensor([32.0, 24.0]) - 1.0
    got = sample_maps(maps.to(device), uv.to(device), (24, 32), radius=1)
    assert torch.allclose(got.cpu(), ref.sample_maps_reference(maps, uv, (24, 32), radius=1), atol=1e-12)


def test_sample_volume_is_trilinear(device):
    """On a volume linear in (x, y, plane) trilinear sampling is exact: the first and last plane centres map to
    plane coordinates -1 and 1, pixel centres to their continuous coordinates."""
    d, hm, wm = 5, 6, 8
    z, y, x = torch.meshgrid(torch.arange(d), torch.arange(hm), torch.arange(wm), indexing="ij")
    vol = (2.0 * x + 3.0 * y - 1.5 * z).double()[None, None].repeat(2, 1, 1, 1, 1)
    uv = torch.tensor([[[1.5, 1.5], [3.25, 2.75]], [[6.5, 4.5], [2.0, 3.0]]], dtype=torch.float64)  # map = image
    pc = torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=torch.float64)
    got = sample_volume(vol.to(device), uv.to(device), pc.to(device), (hm, wm))[..., 0].cpu()
    plane = (pc + 1) / 2 * (d - 1)
    want = 2.0 * (uv[..., 0] - 0.5) + 3.0 * (uv[..., 1] - 0.5) - 1.5 * plane
    assert torch.allclose(got, want, atol=1e-10)
