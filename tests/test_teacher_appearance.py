"""The appearance teacher: kernel vs its plain-loop twin, grid and normalisation, determinism, no ground truth, the
cache, what each descriptor block responds to, and a behavioural check on a generated jn-synth scene."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers import (
    AppearanceTeacher,
    AppearanceTeacherConfig,
    GroundTruth,
    TeacherError,
    TeacherInputs,
    cache_key,
    compute_teacher_features,
    patch_grid_hw,
)
from jacobinerf_ns.teachers import appearance as appearance_module
from jacobinerf_ns.teachers.appearance import (
    _Derivatives,
    appearance_descriptors,
    appearance_descriptors_reference,
    rgb_to_lab,
)

H, W = 32, 48  # a 4 x 6 grid of 8-pixel patches


def appearance(**kwargs) -> AppearanceTeacherConfig:
    kwargs.setdefault("show_progress", False)
    return AppearanceTeacherConfig(**kwargs)


def raw(**kwargs) -> AppearanceTeacherConfig:
    """No PCA, float32 storage: the teacher's own descriptors."""
    return appearance(**{"pca_dim": None, "storage_dtype": "float32", **kwargs})


def random_scene(num_views: int = 3, seed: int = 0, hw: tuple[int, int] = (H, W)) -> TeacherInputs:
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(num_views, *hw, 3, generator=gen)
    sem = [torch.randint(-1, 3, hw, generator=gen) for _ in range(num_views)]
    inst = [torch.randint(0, 5, hw, generator=gen) for _ in range(num_views)]
    return TeacherInputs(images=images, semantics=sem, instances=inst)


def blocks(features: torch.Tensor, cfg: AppearanceTeacherConfig, name: str, scale: int = 0) -> torch.Tensor:
    return features[..., cfg.block_slices()[name][scale]]


def unnormalised(image: torch.Tensor, cfg: AppearanceTeacherConfig) -> torch.Tensor:
    """The weighted blocks of one (H, W, 3) image in float64, before the final L2 normalisation."""
    return appearance_descriptors(image[None].double(), cfg, normalize=False)[0]


# ------------------------------------------------------------------------------------------- kernel vs reference


@pytest.mark.parametrize(
    "hw, options",
    [
        ((14, 22), dict(stride=4)),
        ((17, 13), dict(stride=5, context_sizes=(1, 3, 5), num_orientations=6, lbp_radii=(1, 3))),
        ((20, 30), dict(stride=4, load_size=12, gradient_sigmas=(1.5,), num_filter_orientations=0)),
        ((11, 9), dict(stride=3, colour_weight=0.5, texture_weight=2.0, lbp_threshold=0.0, log_sigmas=())),
    ],
    ids=["plain", "odd-size-more-scales", "load-size", "other-weights"],
)
def test_kernel_matches_loop_reference(hw, options, device):
    cfg = appearance(pca_dim=None, **options)
    gen = torch.Generator().manual_seed(sum(hw))
    images = torch.rand(2, *hw, 3, generator=gen, dtype=torch.float64)
    images[1, : hw[0] // 2] = 0.3  # a flat region: zero gradients, LBP code 0
    fast = appearance_descriptors(images.to(device), cfg).cpu()
    assert fast.shape == (2, *patch_grid_hw(hw, cfg.stride, cfg.load_size), cfg.raw_dim())
    for i in range(2):
        ref = appearance_descriptors_reference(images[i], cfg)
        assert torch.allclose(fast[i], ref, atol=1e-10, rtol=0), (fast[i] - ref).abs().max()


def test_lab_matches_scikit_image():
    rgb = torch.rand(1, 7, 9, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rgb[0, 0, :3] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.01, 0.02, 0.005]], dtype=torch.float64)
    ours = rgb_to_lab(rgb.permute(0, 3, 1, 2))[0].permute(1, 2, 0)
    assert np.allclose(ours.numpy(), rgb2lab(rgb[0].numpy()), atol=1e-3)


def test_gaussian_derivatives_are_exact_on_quadratics():
    """Cross-correlation signs and orders: on ℓ = a·x² + b·x·y + c·y + d the filters give ∂x = 2ax + by, ∂y = bx + c,
    ∂xx = 2a, ∂xy = b, ∂yy = 0 away from the borders (replicate padding only matters there)."""
    y, x = torch.meshgrid(
        torch.arange(40.0, dtype=torch.float64), torch.arange(40.0, dtype=torch.float64), indexing="ij"
    )
    a, b, c, d = 1e-3, -2e-3, 3e-2, 0.2
    ell = (a * x**2 + b * x * y + c * y + d)[None, None]
    deriv = _Derivatives(ell)
    inner = (slice(None), slice(None), slice(10, 30), slice(10, 30))
    for sigma in (1.0, 2.0):
        expected = {
            (1, 0): 2 * a * x + b * y,
            (0, 1): b * x + c,
            (2, 0): torch.full_like(x, 2 * a),
            (1, 1): torch.full_like(x, b),
            (0, 2): torch.zeros_like(x),
        }
        for (ox, oy), want in expected.items():
            got = deriv(sigma, ox, oy)[inner][0, 0]
            assert torch.allclose(got, want[10:30, 10:30], atol=1e-12), (sigma, ox, oy)


# ------------------------------------------------------------------------------------ shapes, grid, normalisation


def test_shapes_grid_and_normalisation():
    out = compute_teacher_features(appearance(), random_scene(), None)
    assert out.features.shape == (3, 4, 6, 64) and out.features.dtype == torch.float16
    assert out.stride == 8 and out.grid_hw == (4, 6) and out.image_hw == (H, W)
    assert out.teacher_name == "appearance" and not out.is_synthetic and out.pca is not None
    assert torch.allclose(out.features.double().norm(dim=-1), torch.ones(3, 4, 6, dtype=torch.float64), atol=2e-3)
    cfg = raw()
    plain = compute_teacher_features(cfg, random_scene(), None)
    assert plain.features.shape == (3, 4, 6, cfg.raw_dim()) and plain.pca is None
    assert torch.allclose(plain.features.double().norm(dim=-1), torch.ones(3, 4, 6, dtype=torch.float64), atol=1e-5)
    # Sizes that are not multiples of the stride, and load_size, follow patch_grid_hw.
    odd = random_scene(1, hw=(30, 45))
    assert compute_teacher_features(raw(), odd, None).grid_hw == (4, 6) == patch_grid_hw((30, 45), 8)
    big = random_scene(1, hw=(64, 96))
    small = compute_teacher_features(raw(load_size=16), big, None)
    assert (
        small.grid_hw
        == (2, 3)
        == patch_grid_hw((64, 96), 8, 16)
        == AppearanceTeacher(raw(load_size=16)).grid_hw((64, 96))
    )


def test_raw_dim_is_known_from_the_config():
    assert AppearanceTeacherConfig().raw_dim() == 2 * (6 + 8 * 2 + 10 * 2 + 3 + 4) == 98
    cfg = AppearanceTeacherConfig(context_sizes=(1, 3, 5), num_orientations=6, lbp_radii=(1,), log_sigmas=(2.0,))
    assert cfg.raw_dim() == 3 * (6 + 6 * 2 + 10 + 1 + 4)
    slices = cfg.block_slices()
    covered = sorted(i for per_scale in slices.values() for s in per_scale for i in range(s.start, s.stop))
    assert covered == list(range(cfg.raw_dim()))
    out = AppearanceTeacher(raw(**{k: getattr(cfg, k) for k in ("context_sizes", "num_orientations", "lbp_radii")}))
    assert out.extract(torch.rand(16, 16, 3), 0, None).shape[-1] == out.feature_dim


def test_grid_follows_the_base_convention_and_lookup_finds_the_patch():
    """Flat-colour squares on the grid's own patch regions (36 x 27 px: a 4 x 3 grid of 9-px patches): each patch
    sees exactly its square's colour, and ``TeacherFeatures.lookup`` maps pixels near a patch centre to it."""
    grid = patch_grid_hw((36, 27), 8)
    assert grid == (4, 3)
    gen = torch.Generator().manual_seed(3)
    colours = torch.rand(4, 3, 3, generator=gen)
    image = colours.repeat_interleave(9, dim=0).repeat_interleave(9, dim=1)
    cfg = raw(gradient_weight=0.0, texture_weight=0.0, filter_weight=0.0, context_sizes=(1,))
    blocks_ = unnormalised(image, cfg)
    lab = torch.from_numpy(rgb2lab(colours.double().numpy())) / 100
    assert torch.allclose(blocks(blocks_, cfg, "colour")[..., :3], cfg.colour_weight * lab, atol=1e-5)
    assert blocks(blocks_, cfg, "colour")[..., 3:].abs().max() < 1e-6  # no variation inside a patch
    feats = compute_teacher_features(raw(), TeacherInputs(images=image[None]), None)
    patch_feats = feats.features[0].reshape(12, -1)
    ys, xs = torch.meshgrid(torch.arange(36), torch.arange(27), indexing="ij")
    near_centre = ((ys % 9 - 4).abs() <= 1) & ((xs % 9 - 4).abs() <= 1)  # >= 79 % of the bilinear weight
    y, x = ys[near_centre], xs[near_centre]
    looked_up = feats.lookup(torch.zeros_like(y), y, x)
    nearest = (looked_up @ patch_feats.T).argmax(dim=1)
    assert torch.equal(nearest, (y // 9) * 3 + x // 9)


# ------------------------------------------------------------------------------ determinism, no ground truth, cache


def test_deterministic():
    scene = random_scene()
    a = compute_teacher_features(appearance(), scene, None)
    b = compute_teacher_features(appearance(), scene, None)
    assert torch.equal(a.features, b.features) and torch.equal(a.pca.components, b.pca.components)
    teacher = AppearanceTeacher(raw())
    image = scene.images[0]
    assert torch.equal(teacher.extract(image, 0, None), teacher.extract(image.clone(), 5, None))
    batched = teacher.extract_many(list(scene.images), [0, 1, 2], [None] * 3)
    assert torch.allclose(batched[0], teacher.extract(image, 0, None), atol=1e-6)


def test_large_batches_are_split_without_changing_the_output(monkeypatch):
    scene = random_scene(5)
    whole = compute_teacher_features(raw(batch_size=5), scene, None).features
    monkeypatch.setattr(appearance_module, "MAX_PIXELS_PER_PASS", 2 * H * W)  # 2 images per kernel call
    calls = []
    original = appearance_module.appearance_descriptors
    monkeypatch.setattr(
        appearance_module, "appearance_descriptors", lambda x, cfg: calls.append(len(x)) or original(x, cfg)
    )
    split = compute_teacher_features(raw(batch_size=5), scene, None).features
    assert calls == [2, 2, 1] and torch.allclose(split, whole, atol=1e-6)


class PoisonedGroundTruth(GroundTruth):
    """Ground truth whose labels cannot be read: any access fails the test."""

    def __init__(self) -> None:
        pass

    def __getattribute__(self, name: str):
        if name in ("semantics", "instances"):
            raise AssertionError("the appearance teacher read ground truth")
        return super().__getattribute__(name)


def test_never_reads_ground_truth():
    assert AppearanceTeacher.requires_ground_truth is False and AppearanceTeacher.is_synthetic is False
    scene = random_scene()
    with_gt = compute_teacher_features(appearance(), scene, None)
    without = compute_teacher_features(appearance(), TeacherInputs(images=scene.images), None)
    relabelled = TeacherInputs(images=scene.images, semantics=[s.flip(0) for s in scene.semantics])
    other_gt = compute_teacher_features(appearance(), relabelled, None)
    assert torch.equal(with_gt.features, without.features) and torch.equal(with_gt.features, other_gt.features)
    teacher = AppearanceTeacher(raw())
    poisoned = teacher.extract_many(list(scene.images), [0, 1, 2], [PoisonedGroundTruth()] * 3)
    assert torch.equal(
        torch.stack(poisoned), torch.stack(teacher.extract_many(list(scene.images), [0, 1, 2], [None] * 3))
    )
    assert cache_key(teacher, scene) == cache_key(teacher, TeacherInputs(images=scene.images))


class CountingExtract:
    def __init__(self, monkeypatch):
        self.images = 0
        original = AppearanceTeacher.extract_many
        counter = self

        def extract_many(teacher, images, indices, gts):
            counter.images += len(images)
            return original(teacher, images, indices, gts)

        monkeypatch.setattr(AppearanceTeacher, "extract_many", extract_many)


def test_goes_through_the_cache(tmp_path, monkeypatch):
    counter = CountingExtract(monkeypatch)
    scene = random_scene()
    first = compute_teacher_features(appearance(), scene, tmp_path)
    assert counter.images == 3 and first.cache_key is not None
    second = compute_teacher_features(appearance(batch_size=1, show_progress=True), scene, tmp_path)
    assert counter.images == 3 and torch.equal(first.features, second.features)  # a hit: nothing extracted
    assert second.cache_key == first.cache_key
    key = cache_key(AppearanceTeacher(appearance()), scene)
    assert key == first.cache_key == cache_key(AppearanceTeacher(appearance(device="cpu", batch_size=3)), scene)
    for change in (
        dict(num_orientations=6),
        dict(colour_weight=1.0),
        dict(load_size=16),
        dict(stride=4),
        dict(lbp_threshold=0.05),
        dict(context_sizes=(1, 5)),
    ):
        assert cache_key(AppearanceTeacher(appearance(**change)), scene) != key, change
    changed = compute_teacher_features(appearance(colour_weight=1.0), scene, tmp_path)
    assert counter.images == 6 and not torch.equal(changed.features, first.features)


# ----------------------------------------------------------------------------- what each block responds to


def stripes(period: float, direction: str, size: int = 32, contrast: float = 0.6) -> torch.Tensor:
    """Sinusoidal grey stripes: ``vertical`` (varying along x), ``horizontal`` (along y) or ``diagonal``."""
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    coord = {"vertical": x, "horizontal": y, "diagonal": (x + y) / math.sqrt(2)}[direction]
    grey = 0.5 + 0.5 * contrast * torch.sin(2 * math.pi * coord / period)
    return grey[..., None].expand(size, size, 3).clone()


def test_gradient_block_sees_edge_orientation():
    cfg = raw()
    n = cfg.num_orientations
    expected_bin = {"vertical": 0, "horizontal": n // 2, "diagonal": n // 4}  # gradient angle 0, 90, 45 degrees
    histograms = {}
    for direction, want in expected_bin.items():
        grad = blocks(unnormalised(stripes(8, direction), cfg), cfg, "gradient")
        for sigma_index in range(len(cfg.gradient_sigmas)):
            hist = grad[1:-1, 1:-1, sigma_index * n : (sigma_index + 1) * n]  # inner patches (no border)
            assert bool((hist.argmax(dim=-1) == want).all()), (direction, sigma_index)
        histograms[direction] = grad[1:-1, 1:-1].reshape(-1, grad.shape[-1]).mean(0)
    cos = F.cosine_similarity(histograms["vertical"], histograms["horizontal"], dim=0)
    assert cos < 0.2
    flat = blocks(unnormalised(torch.full((32, 32, 3), 0.4), cfg), cfg, "gradient")
    assert flat.abs().max() < 1e-9


def lab_colour(lab: tuple[float, float, float], size: int = 16) -> torch.Tensor:
    rgb = torch.from_numpy(lab2rgb(np.array([[lab]], dtype=np.float64))[0, 0])
    return rgb.view(1, 1, 3).expand(size, size, 3).clone()


def test_colour_block_sees_lightness_and_both_chroma_axes_and_nothing_else_sees_flat_colour():
    cfg = raw()
    base, lighter, redder, yellower = (50.0, 0.0, 0.0), (70.0, 0.0, 0.0), (50.0, 30.0, 0.0), (50.0, 0.0, 30.0)
    out = {lab: unnormalised(lab_colour(lab), cfg) for lab in (base, lighter, redder, yellower)}
    for lab, blocks_ in out.items():
        mean = blocks(blocks_, cfg, "colour")[..., :3]
        want = cfg.colour_weight * torch.tensor(rgb2lab(lab_colour(lab).numpy())[0, 0] / 100)
        assert torch.allclose(mean, want.expand_as(mean), atol=1e-4)
    # each axis moves the colour block by its Lab distance (20 or 30 units) / 100, times the weight
    for other, delta in ((lighter, 0.2), (redder, 0.3), (yellower, 0.3)):
        moved = (blocks(out[other], cfg, "colour") - blocks(out[base], cfg, "colour"))[..., :3].norm(dim=-1)
        assert torch.allclose(moved, torch.full_like(moved, cfg.colour_weight * delta), atol=2e-3)
        for name in ("gradient", "texture", "filters"):  # blind to a flat colour
            assert torch.allclose(blocks(out[other], cfg, name), blocks(out[base], cfg, name), atol=1e-9), name
    # the local standard deviation: a fine two-colour checkerboard has std = half the Lab difference per channel
    a, b = lab_colour((40.0, 20.0, -10.0), 2), lab_colour((60.0, -20.0, 10.0), 2)
    tile = torch.cat([torch.cat([a, b], 1), torch.cat([b, a], 1)], 0)
    checker = tile.repeat(8, 8, 1)
    std = blocks(unnormalised(checker, cfg), cfg, "colour")[..., 3:]
    lab_a, lab_b = rgb2lab(a.numpy())[0, 0], rgb2lab(b.numpy())[0, 0]
    half_difference = torch.tensor(np.abs(lab_a - lab_b) / 200)
    smoothed = torch.sqrt(half_difference**2 + 1e-6) - 1e-3
    want = cfg.colour_weight * cfg.colour_std_gain * smoothed
    assert torch.allclose(std, want.expand_as(std), atol=1e-4)


def test_texture_block_sees_the_binary_pattern_not_the_contrast():
    """Period-2 vertical stripes: at radius 1 the bright columns have no brighter neighbour (code 0) and the dark
    ones have 6 non-contiguous ones (non-uniform, code 9); at radius 2 every neighbour has the centre's value."""
    cfg = raw()
    x = torch.arange(32) % 2
    for contrast in (0.3, 0.6):
        grey = 0.5 + contrast * (x.float() - 0.5)
        image = grey.view(1, 32, 1).expand(32, 32, 3).clone()
        tex = blocks(unnormalised(image, cfg), cfg, "texture")
        tex = tex[:, 1:-1]  # the outer columns of patches see the replicated border columns
        r1, r2 = tex[..., :10] * math.sqrt(2) / cfg.texture_weight, tex[..., 10:] * math.sqrt(2) / cfg.texture_weight
        want_r1 = torch.zeros(10, dtype=torch.float64)
        want_r1[[0, 9]] = 1 / math.sqrt(2)
        assert torch.allclose(r1, want_r1.expand_as(r1), atol=1e-9)
        assert torch.allclose(r2, F.one_hot(torch.tensor(0), 10).double().expand_as(r2), atol=1e-9)
    flat = blocks(unnormalised(torch.full((32, 32, 3), 0.5), cfg), cfg, "texture")
    assert float(F.cosine_similarity(flat[0, 0, :10], tex[0, 0, :10], dim=0)) < 0.8


def test_filter_block_selects_the_texture_scale():
    cfg = raw()
    names = [f"log{s:g}" for s in cfg.log_sigmas]
    energies = {}
    for period in (4.0, 24.0):
        filt = blocks(unnormalised(stripes(period, "horizontal", size=48), cfg), cfg, "filters")[2:-2, 2:-2]
        energies[period] = dict(
            zip(names, filt[..., : len(names)].reshape(-1, len(names)).mean(0).tolist(), strict=True)
        )
    assert energies[4.0]["log1"] > energies[4.0]["log4"]
    assert energies[24.0]["log4"] > energies[24.0]["log1"]
    # oriented second derivatives: horizontal stripes vary along y, so the filter along direction pi/2 answers most
    oriented = blocks(unnormalised(stripes(8.0, "horizontal", size=48), cfg), cfg, "filters")[2:-2, 2:-2]
    along = oriented[..., len(names) :].reshape(-1, cfg.num_filter_orientations).mean(0)
    assert int(along.argmax()) == cfg.num_filter_orientations // 2


# ------------------------------------------------------------------------------ behaviour on a generated scene


@pytest.fixture(scope="module")
def small_synth_scene(tmp_path_factory) -> Path:
    from jacobinerf_ns.data.synth import SynthConfig, generate_scene

    out = tmp_path_factory.mktemp("appearance") / "room"
    return generate_scene(
        SynthConfig(output_dir=out, width=40, height=30, num_views=10, supersample=1, export_mesh=False, quiet=True)
    )


def read_stack(root: Path, folder: str, prefix: str, n: int) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(np.array(Image.open(root / folder / f"{prefix}_{i}.png")).astype(np.int64)) for i in range(n)]
    )


def patch_majority(labels: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Majority label and its area fraction per patch (the grid's adaptive-pooling regions), flattened."""
    one_hot = F.one_hot(labels, int(labels.max()) + 1).permute(0, 3, 1, 2).float()
    fraction, label = F.adaptive_avg_pool2d(one_hot, grid).max(dim=1)
    return label.reshape(-1), fraction.reshape(-1)


def instance_vs_class_similarity(features: torch.Tensor, semantics, instances) -> tuple[float, float]:
    """Mean cosine over pairs of pure patches of the same instance, and over pairs of different classes."""
    n, h, w, d = features.shape
    cls, cls_frac = patch_majority(semantics, (h, w))
    inst, inst_frac = patch_majority(instances, (h, w))
    keep = (cls_frac >= 0.8) & (inst_frac >= 0.8) & (cls > 0) & (inst > 0)
    x = F.normalize(features.reshape(-1, d)[keep].float(), dim=-1)
    cls, inst = cls[keep], inst[keep]
    sim = x @ x.T
    same_instance = (inst[:, None] == inst[None]) & ~torch.eye(len(x), dtype=torch.bool)
    other_class = cls[:, None] != cls[None]
    assert same_instance.sum() >= 20 and other_class.sum() >= 100  # enough pairs for a mean
    return float(sim[same_instance].mean()), float(sim[other_class].mean())


def test_patches_of_one_instance_are_more_alike_than_patches_of_different_classes(small_synth_scene):
    root, n = small_synth_scene, 10
    images = read_stack(root, "rgb", "rgb", n).to(torch.uint8)
    semantics = read_stack(root, "semantic_class", "semantic_class", n)
    instances = read_stack(root, "semantic_instance", "semantic_instance", n)
    feats = compute_teacher_features(appearance(), TeacherInputs(images=images), None).features
    same, different = instance_vs_class_similarity(feats, semantics, instances)
    assert same > different + 0.4, (same, different)
    # Control (a descriptor blind to the image content would behave like this): shuffle the pixels of each image.
    gen = torch.Generator().manual_seed(0)
    shuffled = torch.stack([im.reshape(-1, 3)[torch.randperm(30 * 40, generator=gen)].view(30, 40, 3) for im in images])
    feats = compute_teacher_features(appearance(), TeacherInputs(images=shuffled), None).features
    same_c, different_c = instance_vs_class_similarity(feats, semantics, instances)
    assert abs(same_c - different_c) < 0.2, (same_c, different_c)


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_images_are_one_line_errors():
    teacher = AppearanceTeacher(raw())
    with pytest.raises(TeacherError, match=r"teacher 'appearance', image 4: shape \(16, 16, 4\), expected \(H, W, 3\)"):
        teacher.extract(torch.rand(16, 16, 4), 4, None)
    with pytest.raises(TeacherError, match=r"image 1: size \(16, 8\) differs from the batch's \(16, 16\)"):
        teacher.extract_many([torch.rand(16, 16, 3), torch.rand(16, 8, 3)], [0, 1], [None, None])
    with pytest.raises(TeacherError, match=r"values span \[0, 255\], expected \[0, 1\]"):
        teacher.extract(torch.rand(16, 16, 3) * 0 + torch.tensor([0.0, 255.0, 1.0]), 0, None)
    images = torch.rand(3, H, W, 3)
    images[1, 2, 3, 0] = float("nan")
    for cache_dir in (None,):
        with pytest.raises(TeacherError, match=r"teacher 'appearance', image 1: the image contains NaN or inf") as info:
            compute_teacher_features(appearance(), TeacherInputs(images=images), cache_dir)
        assert "\n" not in str(info.value)
    with pytest.raises(TeacherError, match=r"image 0 has shape \(32, 48\), expected \(H, W, 3\)"):
        compute_teacher_features(appearance(), TeacherInputs(images=[torch.rand(H, W)]), None)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(context_sizes=(1, 2)), "context_sizes must be odd"),
        (dict(pca_dim=200), "pca_dim 200 must be in"),
        (dict(stride=0), "stride must be positive"),
        (dict(load_size=4), "load_size 4 is smaller than one patch"),
        (dict(colour_weight=0, gradient_weight=0, texture_weight=0, filter_weight=0), "not all 0"),
        (dict(gradient_sigmas=()), "gradient_sigmas"),
        (dict(lbp_radii=(0,)), "lbp_radii"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        AppearanceTeacher(appearance(**options))


def test_module_exports():
    assert appearance_module.AppearanceTeacherConfig is AppearanceTeacherConfig
    assert AppearanceTeacherConfig()._target is AppearanceTeacher and AppearanceTeacherConfig().pca_dim == 64
    assert isinstance(AppearanceTeacherConfig().setup(), AppearanceTeacher)
