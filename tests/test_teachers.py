"""Teachers (synthetic, DINO with random weights), the patch-grid lookup and the content-keyed feature cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers import (
    DinoTeacher,
    DinoTeacherConfig,
    SyntheticTeacher,
    SyntheticTeacherConfig,
    TeacherCacheWarning,
    TeacherError,
    TeacherFeatures,
    TeacherInputs,
    TeacherWeightsError,
    cache_key,
    cache_path,
    compute_teacher_features,
    patch_grid_hw,
)
from jacobinerf_ns.teachers import cache as cache_module

H, W = 32, 48  # a 4 x 6 grid of 8-pixel patches


def block_scene(num_views: int = 3, seed: int = 0) -> TeacherInputs:
    """3 classes in 2-patch-wide columns; each class has 2 instances (top and bottom half); random images."""
    col = torch.arange(W) // 16  # class 0, 1, 2
    row = (torch.arange(H) >= 16).long()  # 0 top, 1 bottom
    sem = col[None, :].expand(H, W).clone()
    inst = 1 + 2 * sem + row[:, None]
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(num_views, H, W, 3, generator=gen)
    return TeacherInputs(images=images, semantics=[sem] * num_views, instances=[inst] * num_views)


def patch_labels() -> tuple[torch.Tensor, torch.Tensor]:
    """Class and instance id of every patch of the 4 x 6 grid (each patch holds one instance)."""
    cls = (torch.arange(6) // 2)[None, :].expand(4, 6)
    inst = 1 + 2 * cls + (torch.arange(4) >= 2).long()[:, None]
    return cls.reshape(-1), inst.reshape(-1)


def synth(**kwargs) -> SyntheticTeacherConfig:
    kwargs.setdefault("show_progress", False)
    return SyntheticTeacherConfig(**kwargs)


def dino(**kwargs) -> DinoTeacherConfig:
    defaults = dict(pretrained=False, load_size=None, pca_dim=None, show_progress=False, storage_dtype="float32")
    return DinoTeacherConfig(**{**defaults, **kwargs})


class CountingExtract:
    """Wraps SyntheticTeacher.extract to count calls (and optionally corrupt one image's output)."""

    def __init__(self, monkeypatch, corrupt=None):
        self.calls = 0
        original = SyntheticTeacher.extract
        counter = self

        def extract(teacher, image, index, gt):
            counter.calls += 1
            out = original(teacher, image, index, gt)
            return corrupt(out, index) if corrupt is not None else out

        monkeypatch.setattr(SyntheticTeacher, "extract", extract)


def unit_norms(features: torch.Tensor) -> torch.Tensor:
    return features.double().norm(dim=-1)


# ----------------------------------------------------------------------------------------------- synthetic teacher


def test_synthetic_shapes_stride_normalisation():
    out = compute_teacher_features(synth(), block_scene(), None)
    assert out.features.shape == (3, 4, 6, 64) and out.features.dtype == torch.float16
    assert out.stride == 8 and out.image_hw == (H, W) and out.grid_hw == (4, 6)
    assert out.is_synthetic and "synthetic" in out.teacher_name
    assert torch.allclose(unit_norms(out.features), torch.ones(3, 4, 6, dtype=torch.float64), atol=2e-3)
    # A size that is not a multiple of the stride: round(30 / 8) = 4, round(45 / 8) = 6.
    sem = torch.zeros(30, 45, dtype=torch.long)
    odd = TeacherInputs(images=torch.rand(1, 30, 45, 3), semantics=[sem])
    assert compute_teacher_features(synth(stride=8), odd, None).grid_hw == (4, 6) == patch_grid_hw((30, 45), 8)
    assert compute_teacher_features(synth(name="gt-teacher"), odd, None).teacher_name == "synthetic-gt-teacher"


def test_synthetic_is_deterministic_per_seed():
    scene = block_scene()
    a = compute_teacher_features(synth(seed=3), scene, None).features
    b = compute_teacher_features(synth(seed=3), scene, None).features
    c = compute_teacher_features(synth(seed=4), scene, None).features
    assert torch.equal(a, b)
    assert (a.float() - c.float()).abs().max() > 0.1


def test_synthetic_similarity_order_instance_class_other():
    out = compute_teacher_features(
        synth(instance_variation=0.5, view_noise=0.1, class_confusion=0.0), block_scene(4), None
    )
    f = out.features.float().reshape(-1, 64)
    cls, inst = patch_labels()
    cls, inst = cls.repeat(4), inst.repeat(4)
    sim = f @ f.T
    off_diag = ~torch.eye(len(cls), dtype=torch.bool)
    same_inst = (inst[:, None] == inst[None, :]) & off_diag
    same_cls_other = (cls[:, None] == cls[None, :]) & (inst[:, None] != inst[None, :])
    other_cls = cls[:, None] != cls[None, :]
    s_inst, s_cls, s_other = sim[same_inst].mean(), sim[same_cls_other].mean(), sim[other_cls].mean()
    assert s_inst > s_cls + 0.05 and s_cls > s_other + 0.3, (s_inst, s_cls, s_other)


def test_class_confusion_rule():
    views = 30
    scene = block_scene(views)
    cls, inst = patch_labels()
    clean = compute_teacher_features(synth(instance_variation=0.0, view_noise=0.0, class_confusion=0.0), scene, None)
    cfg = synth(instance_variation=0.0, view_noise=0.0, class_confusion=0.3, storage_dtype="float32")
    teacher = cfg.setup()
    teacher.prepare(scene)
    table, partner = teacher.class_embeddings(), teacher.partners()
    # Partners: a single cycle over the classes, never a class itself.
    assert sorted(partner.tolist()) == [0, 1, 2] and all(partner[c] != c for c in range(3))
    assert torch.allclose(
        clean.features.float().reshape(views, 24, 64), table[cls + 1].expand(views, -1, -1), atol=2e-3
    )
    confused = compute_teacher_features(cfg, scene, None).features.reshape(views, 24, 64)
    own = (confused * table[cls + 1]).sum(-1) > 0.9999
    swapped = (confused * table[partner[cls] + 1]).sum(-1) > 0.9999
    assert bool((own ^ swapped).all())  # every patch is exactly its class or its partner
    assert 0.2 < swapped.float().mean() < 0.4  # rate ~ class_confusion (720 patches)
    assert swapped.any(dim=1).sum() > views // 2  # per view and patch, not per image
    # Instance mode: an instance is confused in all views or in none.
    inst_cfg = synth(instance_variation=0.0, view_noise=0.0, class_confusion=0.5, confusion_unit="instance")
    per_inst = compute_teacher_features(inst_cfg, scene, None).features.float().reshape(views, 24, 64)
    swapped = (per_inst * table[partner[cls] + 1]).sum(-1) > 0.999
    for k in inst.unique():
        column = swapped[:, inst == k]
        assert bool(column.all()) or not bool(column.any())
    no_inst = TeacherInputs(images=scene.images, semantics=scene.semantics)
    with pytest.raises(TeacherError, match="instance"):
        compute_teacher_features(inst_cfg, no_inst, None)


def test_void_pixels_get_their_own_embedding():
    sem = torch.full((H, W), -1, dtype=torch.long)
    sem[:, 24:] = 0
    scene = TeacherInputs(images=torch.rand(1, H, W, 3), semantics=[sem])
    cfg = synth(instance_variation=0.0, view_noise=0.0, class_confusion=1.0, storage_dtype="float32", num_classes=2)
    teacher = cfg.setup()
    table = teacher.class_embeddings()
    f = compute_teacher_features(cfg, scene, None).features[0]
    assert torch.allclose(f[:, :3], table[0].expand(4, 3, 64), atol=1e-5)  # void: never confused
    assert torch.allclose(f[:, 3:], table[teacher.partners()[0] + 1].expand(4, 3, 64), atol=1e-5)
    assert abs(float(table[0] @ table[1])) < 0.6


def test_view_noise_increases_per_view_variance():
    scene = block_scene(8)

    def spread(noise: float) -> float:
        f = compute_teacher_features(
            synth(view_noise=noise, class_confusion=0.0, storage_dtype="float32"), scene, None
        ).features
        return float(f.var(dim=0).sum(-1).mean())

    s0, s1, s2 = spread(0.0), spread(0.2), spread(0.8)
    assert s0 == 0.0 and 0 < s1 < s2


def test_synthetic_requires_ground_truth():
    with pytest.raises(TeacherError, match="ground-truth"):
        compute_teacher_features(synth(), TeacherInputs(images=torch.rand(2, H, W, 3)), None)


# ------------------------------------------------------------------------------------------------------- lookup


def slow_lookup(features: torch.Tensor, image_hw, n: int, y: int, x: int) -> torch.Tensor:
    """Reference: bilinear between patch centres ((i + 0.5) * H / h - 0.5), clamped, re-normalised."""
    _, h, w, _ = features.shape
    height, width = image_hw
    centres_y = [(i + 0.5) * height / h - 0.5 for i in range(h)]
    centres_x = [(j + 0.5) * width / w - 0.5 for j in range(w)]

    def weights(pos: float, centres: list[float]) -> list[tuple[int, float]]:
        if pos <= centres[0]:
            return [(0, 1.0)]
        if pos >= centres[-1]:
            return [(len(centres) - 1, 1.0)]
        i = max(k for k in range(len(centres)) if centres[k] <= pos)
        t = (pos - centres[i]) / (centres[i + 1] - centres[i])
        return [(i, 1 - t), (i + 1, t)]

    acc = torch.zeros(features.shape[-1], dtype=torch.float64)
    for i, wy in weights(float(y), centres_y):
        for j, wx in weights(float(x), centres_x):
            acc += wy * wx * features[n, i, j].double()
    return acc / acc.norm()


def test_lookup_matches_slow_reference_and_dense():
    gen = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(3, 4, 6, 5, generator=gen, dtype=torch.float64), dim=-1)
    tf = TeacherFeatures(features=feats, stride=8, image_hw=(30, 45), teacher_name="t", is_synthetic=True)
    r = 400
    idx = torch.randint(0, 3, (r,), generator=gen)
    y, x = torch.randint(0, 30, (r,), generator=gen), torch.randint(0, 45, (r,), generator=gen)
    fast = tf.lookup(idx, y, x)
    assert fast.dtype == torch.float64 and fast.shape == (r, 5)
    slow = torch.stack(
        [slow_lookup(feats, (30, 45), int(n), int(a), int(b)) for n, a, b in zip(idx, y, x, strict=True)]
    )
    assert torch.allclose(fast, slow, atol=1e-12)
    dense = torch.stack([tf.dense(i) for i in range(3)])
    assert torch.allclose(fast, dense[idx, y, x], atol=1e-12)
    half = TeacherFeatures(feats.half(), 8, (30, 45), "t", True).lookup(idx, y, x)
    assert half.dtype == torch.float32 and torch.allclose(half.double(), slow, atol=2e-3)


# ------------------------------------------------------------------------------------------------------- cache


def only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_cache_hit_skips_extraction(tmp_path, monkeypatch):
    counter = CountingExtract(monkeypatch)
    scene = block_scene()
    first = compute_teacher_features(synth(), scene, tmp_path)
    assert counter.calls == 3
    second = compute_teacher_features(synth(), scene, tmp_path)
    assert counter.calls == 3
    assert torch.equal(first.features, second.features) and second.cache_key == first.cache_key
    assert only_files(tmp_path) == [cache_path(tmp_path, "synthetic", first.cache_key).name]
    # A field that does not change the features keeps the key.
    compute_teacher_features(synth(show_progress=True), scene, tmp_path)
    assert counter.calls == 3


def test_cache_hit_with_identities_decodes_no_image(tmp_path):
    class LazyImages:
        def __init__(self):
            self.reads = 0

        def __len__(self):
            return 2

        def __getitem__(self, i):
            self.reads += 1
            return torch.full((H, W, 3), 0.1 * i)

    sem = [torch.zeros(H, W, dtype=torch.long)] * 2
    cfg = synth()
    compute_teacher_features(cfg, TeacherInputs(LazyImages(), sem, identities=["a", "b"]), tmp_path)
    lazy = LazyImages()
    compute_teacher_features(cfg, TeacherInputs(lazy, sem, identities=["a", "b"], image_size=(H, W)), tmp_path)
    assert lazy.reads == 0


def test_cache_recomputes_when_an_image_or_a_config_field_changes(tmp_path, monkeypatch):
    counter = CountingExtract(monkeypatch)
    scene = block_scene()
    base = compute_teacher_features(synth(), scene, tmp_path)
    images = scene.images.clone()
    images[1, 0, 0, 0] += 0.5
    changed = TeacherInputs(images=images, semantics=scene.semantics, instances=scene.instances)
    moved = compute_teacher_features(synth(), changed, tmp_path)
    assert counter.calls == 6 and moved.cache_key != base.cache_key
    other_gt = [s.clone() for s in scene.semantics]
    other_gt[2][0, 0] = 1
    relabelled = TeacherInputs(images=scene.images, semantics=other_gt, instances=scene.instances)
    compute_teacher_features(synth(), relabelled, tmp_path)
    assert counter.calls == 9
    noisier = compute_teacher_features(synth(view_noise=0.5), scene, tmp_path)
    assert counter.calls == 12 and not torch.equal(noisier.features, base.features)
    assert len(only_files(tmp_path)) == 4


def rewrite_cache_file(path: Path, **changes) -> None:
    data = torch.load(path, weights_only=True)
    data.update(changes)
    torch.save(data, path)


@pytest.mark.parametrize(
    "change",
    [
        dict(key="0" * 64),
        dict(features=torch.zeros(3, 4, 6, 32, dtype=torch.float16)),  # another dimension
        dict(features=torch.zeros(3, 4, 6, 64, dtype=torch.float32), dtype="torch.float32"),
        dict(image_hw=[16, 24]),
        dict(teacher_name="dino"),
    ],
    ids=["key", "dim", "dtype", "image-size", "teacher"],
)
def test_stale_cache_file_is_recomputed(tmp_path, monkeypatch, change):
    counter = CountingExtract(monkeypatch)
    scene = block_scene()
    good = compute_teacher_features(synth(), scene, tmp_path)
    path = cache_path(tmp_path, good.teacher_name, good.cache_key)
    rewrite_cache_file(path, **change)
    with pytest.warns(TeacherCacheWarning, match="stale"):
        again = compute_teacher_features(synth(), scene, tmp_path)
    assert counter.calls == 6 and torch.equal(again.features, good.features)
    assert torch.load(path, weights_only=True)["key"] == good.cache_key  # rewritten
    compute_teacher_features(synth(), scene, tmp_path)
    assert counter.calls == 6


def test_nan_cache_file_is_treated_as_corrupt(tmp_path, monkeypatch):
    counter = CountingExtract(monkeypatch)
    scene = block_scene()
    good = compute_teacher_features(synth(), scene, tmp_path)
    path = cache_path(tmp_path, good.teacher_name, good.cache_key)
    bad = good.features.clone()
    bad[1, 2, 3, 4] = float("nan")
    rewrite_cache_file(path, features=bad)
    with pytest.warns(TeacherCacheWarning, match="NaN"):
        again = compute_teacher_features(synth(), scene, tmp_path)
    assert counter.calls == 6 and bool(torch.isfinite(again.features).all())


def test_truncated_cache_file_is_recomputed(tmp_path, monkeypatch):
    counter = CountingExtract(monkeypatch)
    scene = block_scene()
    good = compute_teacher_features(synth(), scene, tmp_path)
    path = cache_path(tmp_path, good.teacher_name, good.cache_key)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(TeacherCacheWarning, match="unreadable"):
        again = compute_teacher_features(synth(), scene, tmp_path)
    assert counter.calls == 6 and torch.equal(again.features, good.features)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def partial_save(obj, fh):
        fh.write(b"PK\x03\x04 half a file")
        raise interruption

    monkeypatch.setattr(cache_module.torch, "save", partial_save)
    interruption = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        compute_teacher_features(synth(), block_scene(), tmp_path)
    assert only_files(tmp_path) == []
    interruption = OSError("disk full")
    with pytest.warns(TeacherCacheWarning, match="could not write"):
        out = compute_teacher_features(synth(), block_scene(), tmp_path)
    assert out.features.shape == (3, 4, 6, 64) and only_files(tmp_path) == []


def test_bad_teacher_output_is_a_clear_error(monkeypatch):
    def nan_on_image_1(out, index):
        return out * float("nan") if index == 1 else out

    CountingExtract(monkeypatch, corrupt=nan_on_image_1)
    with pytest.raises(TeacherError, match=r"teacher 'synthetic', image 1: features contain NaN"):
        compute_teacher_features(synth(), block_scene(), None)
    CountingExtract(monkeypatch, corrupt=lambda out, index: out[:, :5])
    with pytest.raises(TeacherError, match=r"image 0: features have shape \(4, 5, 64\), expected \(4, 6, 64\)"):
        compute_teacher_features(synth(), block_scene(), None)


def test_dimension_mismatches_are_clear_errors():
    with pytest.raises(ConfigError, match="gives 64-dim features but 32 are expected.*pca_dim"):
        compute_teacher_features(synth(), block_scene(), None, expected_dim=32)
    with pytest.raises(ConfigError, match="pca_dim 128 must be in"):
        compute_teacher_features(synth(pca_dim=128), block_scene(), None)
    with pytest.raises(ConfigError, match="pca_dim 500"):
        compute_teacher_features(dino(pca_dim=500), block_scene(), None)


def test_dataset_level_pca():
    scene = block_scene(4)
    raw = compute_teacher_features(synth(dim=32, storage_dtype="float32"), scene, None)
    out = compute_teacher_features(synth(dim=32, pca_dim=4, storage_dtype="float32"), scene, None, expected_dim=4)
    assert out.features.shape == (4, 4, 6, 4) and out.pca is not None and out.pca.components.shape == (32, 4)
    assert torch.allclose(unit_norms(out.features), torch.ones(4, 4, 6, dtype=torch.float64), atol=1e-5)
    # One basis for the whole dataset, fitted on all patches.
    flat = raw.features.reshape(-1, 32).double()
    centred = flat - flat.mean(0)
    top = torch.linalg.eigh(centred.T @ centred)[1][:, -4:]
    assert torch.allclose(
        (out.pca.components.double().T @ top).abs().sum(0), torch.ones(4, dtype=torch.float64), atol=1e-3
    )
    expected = F.normalize(out.pca.project(raw.features), dim=-1)
    assert torch.allclose(out.features, expected, atol=1e-5)


def test_cache_key_ignores_non_feature_fields_and_sees_weights(tmp_path):
    scene = block_scene()
    key = cache_key(DinoTeacher(dino()), scene)
    assert key == cache_key(DinoTeacher(dino(batch_size=1, device="cpu", show_progress=True)), scene)
    assert key != cache_key(DinoTeacher(dino(init_seed=1)), scene)
    assert key != cache_key(DinoTeacher(dino(load_size=16)), scene)
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"one")
    k1 = cache_key(DinoTeacher(dino(checkpoint=ckpt)), scene)
    ckpt.write_bytes(b"two")
    assert k1 != cache_key(DinoTeacher(dino(checkpoint=ckpt)), scene)


# -------------------------------------------------------------------------------------------------------- DINO


@pytest.fixture(scope="module")
def vit_s8_state() -> dict[str, torch.Tensor]:
    """A random ViT-S/8 state dict in the official DINO release layout (same key names as timm 0.6.7, no head)."""
    import timm

    torch.manual_seed(123)
    model = timm.create_model("vit_small_patch8_224_dino", pretrained=False, num_classes=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert "blocks.0.attn.qkv.weight" in state and "norm.weight" in state and "cls_token" in state
    assert not any(k.startswith("head") for k in state)
    return state


def test_dino_offline_without_checkpoint_is_one_fast_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # no cached weights
    # how fast it fails is measured by benchmarks/teacher_speed.py (dino_offline_error_s), not asserted here
    with pytest.raises(TeacherWeightsError) as info:
        compute_teacher_features(dino(pretrained=True), block_scene(1), tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message
    assert "vit_small_patch8_224_dino" in message and "offline" in message and "`checkpoint` option" in message


def test_dino_missing_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "dino_deitsmall8_pretrain.pth"
    for cache_dir in (None, tmp_path / "cache"):
        with pytest.raises(TeacherWeightsError, match=f"checkpoint not found: {missing}"):
            compute_teacher_features(dino(checkpoint=missing), block_scene(1), cache_dir)


def test_dino_dense_features_shapes_and_content():
    scene = block_scene(2)
    images = scene.images.clone()
    images[1] = images[0]  # views 0 and 1 identical
    images = torch.cat([images, torch.rand(1, H, W, 3)])  # view 2 different
    inputs = TeacherInputs(images=images)
    out = compute_teacher_features(dino(batch_size=2), inputs, None)
    assert out.features.shape == (3, 4, 6, 384) and out.stride == 8 and not out.is_synthetic
    assert out.teacher_name == "dino-vit_small_patch8_224_dino-random-init"
    assert torch.allclose(unit_norms(out.features), torch.ones(3, 4, 6, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(out.features[0], out.features[1], atol=1e-5)
    assert (out.features[0] - out.features[2]).abs().max() > 1e-2
    assert (out.features[0, 0, 0] - out.features[0, 3, 5]).abs().max() > 1e-2
    small = compute_teacher_features(dino(load_size=16, pca_dim=8), inputs, None)
    assert small.features.shape == (3, 2, 3, 8) and small.pca is not None
    keys = compute_teacher_features(dino(facet="key"), inputs, None)
    assert keys.features.shape == (3, 4, 6, 384) and keys.teacher_name.endswith("-key-random-init")


def test_dino_forward_matches_timm_at_native_size():
    """At 224 x 224 no interpolation happens: our dense pass must equal timm's own forward."""
    teacher = DinoTeacher(dino(model_name="vit_small_patch16_224_dino"))
    image = torch.rand(224, 224, 3)
    ours = teacher.extract(image, 0, None)
    x = teacher.preprocess(image)[None]
    captured = {}
    qkv = teacher.model.blocks[-1].attn.qkv
    handle = qkv.register_forward_hook(lambda mod, inp, out: captured.setdefault("qkv", out))
    with torch.no_grad():
        tokens = teacher.model.forward_features(x)[0, 1:]
    handle.remove()
    assert ours.shape == (14, 14, 384)
    assert torch.allclose(ours.reshape(-1, 384), F.normalize(tokens, dim=-1), atol=1e-5)
    keys = DinoTeacher(dino(model_name="vit_small_patch16_224_dino", facet="key"))
    keys._model = teacher.model
    ref_k = captured["qkv"][0, 1:, 384:768]
    assert torch.allclose(keys.extract(image, 0, None).reshape(-1, 384), F.normalize(ref_k, dim=-1), atol=1e-5)


def model_params(teacher: DinoTeacher) -> dict[str, torch.Tensor]:
    return teacher.model.state_dict()


def test_dino_official_layout_checkpoint_loads(tmp_path, vit_s8_state):
    path = tmp_path / "dino_deitsmall8_pretrain.pth"
    torch.save(vit_s8_state, path)
    teacher = DinoTeacher(dino(checkpoint=path))
    loaded = model_params(teacher)
    assert set(loaded) == set(vit_s8_state)
    assert all(torch.equal(loaded[k], vit_s8_state[k]) for k in vit_s8_state)
    assert not torch.equal(
        model_params(DinoTeacher(dino()))["blocks.0.attn.qkv.weight"], loaded["blocks.0.attn.qkv.weight"]
    )
    assert teacher.name == "dino-vit_small_patch8_224_dino"  # real weights: no random-init label
    out = compute_teacher_features(dino(checkpoint=path), block_scene(1), None)
    assert out.features.shape == (1, 4, 6, 384)


def test_dino_training_checkpoint_loads_teacher_or_student(tmp_path, vit_s8_state):
    student = {k: v + 1.0 for k, v in vit_s8_state.items()}
    ckpt = {
        "teacher": {
            **{f"module.backbone.{k}": v for k, v in vit_s8_state.items()},
            "module.head.last_layer.weight": torch.zeros(3, 2),
        },
        "student": {
            **{f"module.backbone.{k}": v for k, v in student.items()},
            "module.head.mlp.0.bias": torch.zeros(2),
        },
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=8),
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    got_teacher = model_params(DinoTeacher(dino(checkpoint=path)))
    got_student = model_params(DinoTeacher(dino(checkpoint=path, checkpoint_key="student")))
    assert all(torch.equal(got_teacher[k], vit_s8_state[k]) for k in vit_s8_state)
    assert all(torch.equal(got_student[k], student[k]) for k in student)


def test_dino_mismatched_checkpoint_is_a_clear_error(tmp_path, vit_s8_state):
    missing = {k: v for k, v in vit_s8_state.items() if not k.startswith("blocks.11.")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(TeacherWeightsError, match=r"does not fit vit_small_patch8_224_dino: missing keys \['blocks.11"):
        _ = DinoTeacher(dino(checkpoint=tmp_path / "missing.pth")).model
    wrong = dict(vit_s8_state, **{"norm.weight": torch.ones(768)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(TeacherWeightsError, match=r"norm.weight has shape \(768,\), expected \(384,\)"):
        _ = DinoTeacher(dino(checkpoint=tmp_path / "wrong.pth")).model
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherWeightsError, match="cannot read DINO teacher checkpoint"):
        _ = DinoTeacher(dino(checkpoint=tmp_path / "garbage.pth")).model


def test_dino_positional_embedding_is_interpolated_for_any_grid(vit_s8_state):
    teacher = DinoTeacher(dino())
    pos = teacher._pos_embed((4, 6))
    assert pos.shape == (1, 1 + 24, 384)
    assert torch.equal(pos[:, 0], teacher.model.pos_embed[:, 0])  # CLS entry untouched
    assert math.isqrt(teacher.model.pos_embed.shape[1] - 1) == 28


def test_area_pool_equals_adaptive_average_pooling():
    from jacobinerf_ns.teachers.synthetic import area_pool

    for height, width, grid in ((32, 48, (4, 6)), (30, 45, (4, 6)), (37, 53, (5, 7))):
        values = torch.randn(height, width, 5, dtype=torch.float64)
        ref = F.adaptive_avg_pool2d(values.permute(2, 0, 1)[None], grid)[0].permute(1, 2, 0)
        assert torch.allclose(area_pool(values.float(), grid).double(), ref, atol=1e-5)
