"""2D mask sources (felzenszwalb, slic, ground-truth, SAM with random weights in the official key layout), the
label-map kernels against their loop twins, and the content-keyed mask cache."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.features import masks as masks_module
from jacobinerf_ns.features.masks import (
    SAM_REQUIREMENT,
    SAM_TEST_TINY,
    FelzenszwalbMaskConfig,
    FelzenszwalbMaskSource,
    GroundTruthMaskConfig,
    MaskCacheWarning,
    MaskSourceError,
    MaskWeightsError,
    SamMaskConfig,
    SamMaskSource,
    SlicMaskConfig,
    build_sam_model,
    compute_masks,
    finalize_labels,
    finalize_labels_reference,
    load_sam,
    mask_cache_key,
    mask_cache_path,
    merge_masks,
    merge_masks_reference,
)
from jacobinerf_ns.teachers import TeacherInputs

H, W = 24, 32
COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9], [0.9, 0.9, 0.2]])
QUADRANT = (torch.arange(H)[:, None] >= H // 2).long() * 2 + (torch.arange(W)[None, :] >= W // 2).long()


def block_inputs(n: int = 2, noise: float = 0.02, seed: int = 0, **kwargs) -> TeacherInputs:
    """Four flat-colour quadrants (+ a little noise); instance ids = quadrant + 1 with a void strip."""
    gen = torch.Generator().manual_seed(seed)
    images = (COLOURS[QUADRANT].expand(n, H, W, 3) + noise * torch.randn(n, H, W, 3, generator=gen)).clamp(0, 1)
    inst = QUADRANT + 1
    inst[:, :2] = 0
    sem = (QUADRANT % 2).clone()
    sem[:, :2] = -1
    return TeacherInputs(images=images, semantics=[sem] * n, instances=[inst] * n, **kwargs)


def assert_label_maps(labels: torch.Tensor, n: int) -> None:
    """The documented format: (n, H, W) int32, -1 or contiguous ids 0..K-1 per image."""
    assert labels.shape == (n, H, W) and labels.dtype == torch.int32
    for i in range(n):
        ids = sorted(set(labels[i].unique().tolist()) - {-1})
        assert ids == list(range(len(ids))) and int(labels[i].min()) >= -1


def same_partition(labels: torch.Tensor, reference: torch.Tensor) -> bool:
    pairs = set(zip(labels.reshape(-1).tolist(), reference.reshape(-1).tolist(), strict=True))
    return len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def quiet(config_cls, **kwargs):
    return config_cls(show_progress=False, **kwargs)


# ----------------------------------------------------------------------------------------------- label-map kernels


@pytest.mark.parametrize("min_area", [0, 3, 8])
def test_finalize_labels_matches_reference(min_area, device):
    raw = torch.randint(-3, 12, (7, 9), generator=torch.Generator().manual_seed(min_area)) * 5
    out = finalize_labels(raw.to(device), min_area)
    assert out.dtype == torch.int32 and out.device.type == device.type
    assert torch.equal(out.cpu(), finalize_labels_reference(raw, min_area))
    if min_area == 8:
        assert bool((out == -1).sum() > (raw < 0).sum())  # some real segments were dropped


@pytest.mark.parametrize("min_area", [0, 6, 20])
def test_merge_masks_matches_reference(min_area, device):
    gen = torch.Generator().manual_seed(min_area + 1)
    masks = torch.zeros(6, 8, 10, dtype=torch.bool)
    for k in range(6):  # random boxes of varied size
        y0, x0 = torch.randint(0, 6, (2,), generator=gen).tolist()
        h, w = torch.randint(1, 8, (2,), generator=gen).tolist()
        masks[k, y0 : y0 + h, x0 : x0 + w] = True
    out = merge_masks(masks.to(device), min_area)
    assert torch.equal(out.cpu(), merge_masks_reference(masks, min_area))


def test_merge_masks_smaller_overwrite_larger_and_small_dropped():
    masks = torch.zeros(4, 6, 6, dtype=torch.bool)
    masks[0, 2:4, 2:4] = True  # 4 px, inside mask 1
    masks[1] = True  # 36 px, the background
    masks[2, 0, 0] = True  # 1 px: under min_area
    masks[3, 4:, :] = True  # 12 px
    out = merge_masks(masks, min_area=2)
    assert out[2, 2] == 2 and out[5, 0] == 1 and out[0, 1] == 0  # ids in painting order: largest first
    assert out[0, 0] == 0  # the dropped 1-px mask left the background there
    covered = merge_masks(torch.stack([masks[1], masks[1].clone()]), 1)  # a mask fully overwritten disappears
    assert covered.unique().tolist() == [0]
    assert merge_masks(torch.zeros(0, 6, 6, dtype=torch.bool)).eq(-1).all()


# ------------------------------------------------------------------------------------------------ weightless sources


def test_felzenszwalb_format_determinism_and_quadrants():
    inputs = block_inputs()
    out = compute_masks(quiet(FelzenszwalbMaskConfig, sigma=0.0), inputs)
    assert_label_maps(out.labels, 2)
    assert out.source_name == "felzenszwalb" and not out.is_ground_truth
    assert all(same_partition(out.labels[i], QUADRANT) for i in range(2))  # one segment per flat quadrant
    again = compute_masks(quiet(FelzenszwalbMaskConfig, sigma=0.0), inputs)
    assert torch.equal(out.labels, again.labels)
    # min_area: the quadrants have 192 px each.
    assert bool((compute_masks(quiet(FelzenszwalbMaskConfig, sigma=0.0, min_area=192), inputs).labels >= 0).all())
    assert bool((compute_masks(quiet(FelzenszwalbMaskConfig, sigma=0.0, min_area=193), inputs).labels == -1).all())


def test_slic_format_determinism_and_edges():
    inputs = block_inputs()
    out = compute_masks(quiet(SlicMaskConfig, n_segments=40), inputs)
    assert_label_maps(out.labels, 2)
    assert out.source_name == "slic" and 15 <= int(out.labels[0].max()) + 1 <= 80
    assert torch.equal(out.labels, compute_masks(quiet(SlicMaskConfig, n_segments=40), inputs).labels)
    for i in range(2):  # superpixels follow the colour edges: nearly every pixel shares its segment's quadrant
        pure = 0
        for k in out.labels[i].unique().tolist():
            q = QUADRANT[out.labels[i] == k]
            pure += int((q == q.mode().values).sum())
        assert pure / (H * W) > 0.95


def test_ground_truth_source_says_so_and_follows_instances():
    inputs = block_inputs()
    out = compute_masks(quiet(GroundTruthMaskConfig), inputs)
    assert_label_maps(out.labels, 2)
    assert out.is_ground_truth and "ground-truth" in out.source_name and out.source_name.endswith("instance")
    assert bool((out.labels[:, :, :2] == -1).all())  # void strip
    assert same_partition(out.labels[0, :, 2:], QUADRANT[:, 2:])
    sem = compute_masks(quiet(GroundTruthMaskConfig, target="semantic", name="oracle"), inputs)
    assert sem.source_name == "ground-truth-oracle-semantic"
    assert same_partition(sem.labels[0, :, 2:], (QUADRANT % 2)[:, 2:])
    with pytest.raises(MaskSourceError, match="needs ground truth"):
        compute_masks(quiet(GroundTruthMaskConfig), TeacherInputs(images=inputs.images))
    no_inst = TeacherInputs(images=inputs.images, semantics=inputs.semantics)
    with pytest.raises(MaskSourceError, match="needs instance ids for image 0"):
        compute_masks(quiet(GroundTruthMaskConfig), no_inst)


def test_config_errors():
    with pytest.raises(ConfigError, match="min_area"):
        quiet(FelzenszwalbMaskConfig, min_area=-1).setup()
    with pytest.raises(ConfigError, match="scale > 0"):
        quiet(FelzenszwalbMaskConfig, scale=0.0).setup()
    with pytest.raises(ConfigError, match="n_segments >= 1"):
        quiet(SlicMaskConfig, n_segments=0).setup()


# ------------------------------------------------------------------------------------------------------------ cache


class Counting:
    def __init__(self, monkeypatch, cls=FelzenszwalbMaskSource):
        self.calls = 0
        original = cls.segment
        counter = self

        def segment(source, image, index, gt):
            counter.calls += 1
            return original(source, image, index, gt)

        monkeypatch.setattr(cls, "segment", segment)


def test_cache_hit_and_invalidation(tmp_path: Path, monkeypatch):
    counter = Counting(monkeypatch)
    cfg = quiet(FelzenszwalbMaskConfig)
    inputs = block_inputs()
    first = compute_masks(cfg, inputs, tmp_path)
    assert counter.calls == 2 and first.cache_key is not None
    path = mask_cache_path(tmp_path, "felzenszwalb", first.cache_key)
    assert path.is_file() and path.name.startswith("masks-felzenszwalb-")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file
    hit = compute_masks(FelzenszwalbMaskConfig(show_progress=True), inputs, tmp_path)  # not a mask option
    assert counter.calls == 2 and torch.equal(hit.labels, first.labels) and hit.cache_key == first.cache_key
    # An image change, an identity change and an option change each miss.
    changed = block_inputs(seed=1)
    assert compute_masks(cfg, changed, tmp_path).cache_key != first.cache_key and counter.calls == 4
    with_ids = block_inputs(identities=["a", "b"])
    key_ids = compute_masks(cfg, with_ids, tmp_path).cache_key
    assert counter.calls == 6 and key_ids not in (first.cache_key, None)
    compute_masks(cfg, block_inputs(identities=["a", "c"]), tmp_path)
    assert counter.calls == 8
    compute_masks(quiet(FelzenszwalbMaskConfig, scale=50.0), inputs, tmp_path)
    assert counter.calls == 10
    compute_masks(cfg, inputs, tmp_path)  # the first file is still there and valid
    assert counter.calls == 10


def test_ground_truth_change_invalidates_its_cache(tmp_path: Path):
    inputs = block_inputs()
    key = compute_masks(quiet(GroundTruthMaskConfig), inputs, tmp_path).cache_key
    inst = inputs.instances[0].clone()
    inst[5, 5] = 9
    other = TeacherInputs(images=inputs.images, semantics=inputs.semantics, instances=[inst, inputs.instances[1]])
    assert compute_masks(quiet(GroundTruthMaskConfig), other, tmp_path).cache_key != key
    felz = quiet(FelzenszwalbMaskConfig).setup()  # a source that does not read ground truth ignores it
    assert mask_cache_key(felz, inputs) == mask_cache_key(felz, other)


def corrupt_cases(path: Path, labels: torch.Tensor, key: str):
    good = torch.load(path, weights_only=True)
    yield "truncated", lambda: path.write_bytes(path.read_bytes()[:100]), "unreadable"
    yield "shape", lambda: torch.save({**good, "labels": labels[:, :-1].contiguous()}, path), "labels are"
    yield "dtype", lambda: torch.save({**good, "labels": labels.long()}, path), "labels are"
    yield "key", lambda: torch.save({**good, "key": "0" * 64}, path), "key is"
    yield "ids", lambda: torch.save({**good, "labels": labels - 5}, path), "below -1"
    yield "not a dict", lambda: torch.save([1, 2], path), "not a dict"


def test_corrupt_or_stale_file_is_one_warning_and_recomputed(tmp_path: Path, monkeypatch):
    cfg = quiet(FelzenszwalbMaskConfig)
    inputs = block_inputs()
    first = compute_masks(cfg, inputs, tmp_path)
    path = mask_cache_path(tmp_path, "felzenszwalb", first.cache_key)
    counter = Counting(monkeypatch)
    for name, damage, message in list(corrupt_cases(path, first.labels, first.cache_key)):
        damage()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = compute_masks(cfg, inputs, tmp_path)
        ours = [w for w in caught if issubclass(w.category, MaskCacheWarning)]
        assert len(ours) == 1 and message in str(ours[0].message), (name, [str(w.message) for w in caught])
        assert torch.equal(again.labels, first.labels)
        assert compute_masks(cfg, inputs, tmp_path).cache_key == first.cache_key  # rewritten: a hit again
    assert counter.calls == 2 * 6


# -------------------------------------------------------------------------------------------------------------- SAM


@pytest.fixture
def tiny_sam(tmp_path: Path, monkeypatch) -> Path:
    """A randomly initialised test-only SAM (2 blocks, 32 wide) saved as a plain ``Sam`` state dict."""
    pytest.importorskip("segment_anything", reason=f"the SAM source's package is not installed ({SAM_REQUIREMENT})")
    monkeypatch.setitem(masks_module.SAM_ARCHITECTURES, "test-tiny", SAM_TEST_TINY)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_sam_model("test-tiny")
    path = tmp_path / "sam_test_tiny.pth"
    torch.save(model.state_dict(), path)
    return path


def sam_config(checkpoint, **kwargs) -> SamMaskConfig:
    # Random weights predict poor IoU: keep every mask so the merge path is exercised; 2x2 prompts keep it fast.
    defaults = dict(
        model_type="test-tiny",
        checkpoint=checkpoint,
        points_per_side=2,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        min_area=4,
        device="cpu",
        show_progress=False,
    )
    return SamMaskConfig(**{**defaults, **kwargs})


def test_sam_key_layout_is_the_official_one(tiny_sam: Path):
    """The test-only model has vit_b's keys up to the number of encoder blocks (official checkpoints are
    ``Sam.state_dict()``)."""
    official = build_sam_model("vit_b", "meta").state_dict()  # nothing allocated
    tiny = torch.load(tiny_sam, weights_only=True)

    def layout(keys):
        return {re.sub(r"blocks\.\d+\.", "blocks.N.", k) for k in keys}

    assert layout(official) == layout(tiny) and len(official) > len(tiny)


def test_sam_end_to_end_with_random_weights(tiny_sam: Path, tmp_path: Path, monkeypatch):
    inputs = block_inputs(n=1)
    cfg = sam_config(tiny_sam)
    out = compute_masks(cfg, inputs, tmp_path / "cache")
    assert_label_maps(out.labels, 1)
    assert out.source_name == "sam-test-tiny" and not out.is_ground_truth
    assert int(out.labels.max()) >= 0  # random weights still give masks at these thresholds
    raw = SamMaskSource(cfg).binary_masks(inputs.image(0))
    assert raw.dtype == torch.bool and raw.shape[1:] == (H, W)
    assert torch.equal(merge_masks(raw, cfg.min_area), out.labels[0])  # deterministic, and merged as documented
    # A cache hit does not even load the network.
    monkeypatch.setattr(masks_module, "load_sam", lambda *a, **k: pytest.fail("network loaded on a cache hit"))
    hit = compute_masks(cfg, inputs, tmp_path / "cache")
    assert torch.equal(hit.labels, out.labels) and hit.cache_key == out.cache_key


def test_sam_cache_key_follows_checkpoint_bytes_and_options(tiny_sam: Path, tmp_path: Path):
    inputs = block_inputs(n=1)
    key = mask_cache_key(sam_config(tiny_sam).setup(), inputs)
    state = torch.load(tiny_sam, weights_only=True)
    state["mask_decoder.iou_prediction_head.layers.0.bias"] += 1.0
    other = tmp_path / "other.pth"
    torch.save(state, other)
    assert mask_cache_key(sam_config(other).setup(), inputs) != key
    copy = tmp_path / "copy.pth"
    copy.write_bytes(tiny_sam.read_bytes())
    assert mask_cache_key(sam_config(copy).setup(), inputs) == key  # the bytes count, not the path
    assert mask_cache_key(sam_config(tiny_sam, points_per_side=3).setup(), inputs) != key
    assert mask_cache_key(sam_config(tiny_sam, points_per_batch=8, device="meta").setup(), inputs) == key


def test_sam_weight_errors_are_one_line(tiny_sam: Path, tmp_path: Path, monkeypatch):
    cases = [
        (lambda: sam_config(tmp_path / "missing.pth").setup(), MaskWeightsError, "SAM checkpoint not found"),
        (lambda: sam_config(None).setup(), MaskWeightsError, "needs a local checkpoint"),
        (lambda: load_sam("vit_b", tiny_sam), MaskWeightsError, "does not fit vit_b: missing keys"),
        (lambda: sam_config(tiny_sam, model_type="vit_x").setup(), ConfigError, "unknown SAM model_type"),
    ]
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    cases.append((lambda: load_sam("test-tiny", garbage), MaskWeightsError, "cannot read SAM checkpoint"))
    wide = dict(torch.load(tiny_sam, weights_only=True))
    wide["image_encoder.pos_embed"] = torch.zeros(1, 64, 64, 48)
    wrong = tmp_path / "wrong.pth"
    torch.save(wide, wrong)
    cases.append((lambda: load_sam("test-tiny", wrong), MaskWeightsError, "image_encoder.pos_embed has shape"))
    for call, error, message in cases:
        with pytest.raises(error, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    with pytest.raises(MaskWeightsError, match="sam_vit_h_4b8939.pth"):  # the hint names the official file
        sam_config(None, model_type="vit_h").setup()
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # the package is not installed
    with pytest.raises(MaskSourceError, match=re.escape(SAM_REQUIREMENT)):
        load_sam("test-tiny", tiny_sam)
