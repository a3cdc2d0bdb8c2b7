"""The advertised modes do what the README says: sparse-label Semantic-NeRF, jn-propagate's options, ns-eval's pooled
segmentation scores, and ns-render's outputs of a jacobinerf and a feature-field run (content, not only files)."""

from __future__ import annotations

import copy
import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from jacobinerf_ns.annotations import make_annotation
from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.metrics import confusion_matrix, psnr, segmentation_scores


# ----------------------------------------------------------------------------------- sparse-label Semantic-NeRF
def _semantic_datamanager(scene, **options):
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods["semantic-nerf-tiny"].pipeline.datamanager)
    cfg.data = scene
    cfg.train_num_rays_per_batch = 512
    for key, value in options.items():
        setattr(cfg, key, value)
    return cfg.setup(device="cpu", test_mode="val")


def _labelled_rays(dm, steps: int = 20):
    """(image, y, x) and label of every ray with a training label over a few batches."""
    found = []
    for step in range(steps):
        _, batch = dm.next_train(step)
        keep = batch["semantics"] != IGNORE_LABEL
        found.append((batch["indices"][keep], batch["semantics"][keep], batch["indices"]))
    return found


def test_label_count_and_fraction_keep_exactly_that_many_valid_pixels(synth_scene):
    dm = _semantic_datamanager(synth_scene, label_count=37, label_seed=4)
    valid = dm.train_scene.semantics != IGNORE_LABEL
    assert int(dm.train_label_mask.sum()) == 37 and not (dm.train_label_mask & ~valid).any()
    mask = dm.train_label_mask
    for labelled, labels, _ in _labelled_rays(dm):
        i, y, x = labelled.unbind(-1)
        assert mask[i, y, x].all()  # a ray carries a label only on a kept pixel ...
        assert torch.equal(labels, dm.train_scene.semantics[i, y, x])  # ... and it is that pixel's label
    dm = _semantic_datamanager(synth_scene, label_fraction=0.01)
    assert int(dm.train_label_mask.sum()) == round(0.01 * int(valid.sum()))


def test_annotations_supervise_exactly_the_clicked_pixels(synth_scene, tmp_path):
    dm0 = _semantic_datamanager(synth_scene)
    ann = make_annotation(dm0.train_scene.semantics[1].cpu(), "semantic", "sparse", view=1, seed=2, names={})
    ann.save(tmp_path / "clicks.json")
    dm = _semantic_datamanager(synth_scene, annotations=tmp_path / "clicks.json", labelled_rays_per_batch=64)
    clicked = {(1, int(y), int(x)): int(k) for (y, x), k in zip(ann.pixels.tolist(), ann.labels.tolist(), strict=True)}
    assert int(dm.train_label_mask.sum()) == len(clicked)
    extra_seen = 0
    for labelled, labels, indices in _labelled_rays(dm):
        for (i, y, x), label in zip(labelled.tolist(), labels.tolist(), strict=True):
            assert clicked[(i, y, x)] == label  # only clicked pixels, with the annotation's label index
        extra = indices[-64:]  # the labelled rays appended to every batch
        assert all(tuple(p) in clicked for p in extra.tolist())
        extra_seen += len(extra)
    assert extra_seen == 20 * 64
    # the label space is the annotation's, for training and evaluation alike
    assert list(dm.train_dataset.metadata["semantics"].classes) == ann.label_names


# ------------------------------------------------------------------------------------------- jn-propagate modes
@pytest.fixture(scope="module")
def jnerf(jnerf_run):
    from run_utils import load_pipeline

    return jnerf_run.config_path, load_pipeline(jnerf_run.config_path)


def _propagate(config_path, tmp_path, **options):
    from jacobinerf_ns.scripts.propagate import Propagate

    return Propagate(load_config=config_path, output_path=tmp_path / "p.json", max_views=2, **options).main()


def _labeller(pipeline, method: str, target: str = "semantic", **options):
    from jacobinerf_ns.eval.protocol import label_names as _label_names
    from jacobinerf_ns.propagator import JacobiLabeller, ViewSet

    dm = pipeline.datamanager
    source = "semantics" if target == "semantic" else "instance"
    names = _label_names(pipeline, dm.train_scene, target)
    ann = make_annotation(getattr(dm.train_scene, source)[0].cpu(), target, "sparse", 0, 0, names)
    targets = ViewSet(dm.eval_dataset.cameras, getattr(dm.eval_scene, source).cpu())
    return JacobiLabeller(pipeline.model, ann, dm.train_dataset.cameras, method, targets, **options), ann


def test_2d_perturb_labels_agree_with_first_order_at_small_t(jnerf):
    _, pipeline = jnerf
    perturb, _ = _labeller(pipeline, "2d-perturb", perturb_t=1e-3)
    first, _ = _labeller(pipeline, "2d", perturb_t=1e-3)
    a, b = perturb.predict(0), first.predict(0)
    assert (a == b).float().mean() > 0.95  # measured 99 % (README "2d vs 2d-perturb")


def test_instance_target_propagates_the_instances_of_the_labelled_view(jnerf, tmp_path):
    config_path, pipeline = jnerf
    result = _propagate(config_path, tmp_path, target="instance", method="2d", save_annotations=tmp_path / "a.json")
    inst0 = pipeline.datamanager.train_scene.instance[0]
    present = sorted(int(v) for v in inst0.unique() if v > 0)
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["target"] == "instance" and saved["label_ids"] == present
    assert result["num_classes"] == len(present) and result["target"] == "instance"
    for y, x, label in saved["pixels"]:  # each click lies on the instance it labels
        assert int(inst0[y, x]) == label


def test_normalize_directions_makes_3d_labels_independent_of_each_labels_scale(jnerf):
    from jacobinerf_ns.propagation import unit_directions

    _, pipeline = jnerf
    unit, ann = _labeller(pipeline, "3d", normalize_directions=True)
    assert torch.allclose(unit.directions.mean(dim=1).norm(dim=-1), torch.ones(ann.num_labels), atol=1e-5)
    plain, _ = _labeller(pipeline, "3d")
    scale = plain.directions.mean(dim=1).norm(dim=-1)  # each raw direction rescaled as a whole, not replaced
    assert torch.allclose(unit.directions, plain.directions / scale[:, None, None], rtol=1e-4, atol=1e-7)
    # scaling one label's direction changes the official read-out but not the unit one
    boosted = plain.directions.clone()
    boosted[0] *= 20.0
    before = plain.predict(0)
    plain.directions = boosted
    assert not torch.equal(plain.predict(0), before)
    unit_before = unit.predict(0)
    unit.directions = unit_directions(boosted)
    assert torch.equal(unit.predict(0), unit_before)


def test_normalize_3d_divides_each_labels_map_by_its_image_maximum(jnerf):
    _, pipeline = jnerf
    plain, _ = _labeller(pipeline, "3d")
    normed, _ = _labeller(pipeline, "3d", normalize_3d=True)
    camera = plain.targets.camera(1)
    raw, out = plain.responses(camera), normed.responses(camera)
    expected = raw / (raw.amax(dim=(1, 2), keepdim=True) + 1e-7)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(out.amax(dim=(1, 2)), torch.ones(len(out)), atol=1e-4)


def test_labelled_view_out_of_range_is_a_clear_error(jnerf, tmp_path):
    config_path, _ = jnerf
    with pytest.raises(ConfigError, match=r"labelled view 99 is not a training view \(0\.\.7\)"):
        _propagate(config_path, tmp_path, labelled_view=99)


# ------------------------------------------------------------------------------------- ns-eval pooled scores
def test_ns_eval_miou_is_pooled_from_one_confusion_matrix(semantic_run):
    """Two test views whose per-image mIoU average (0.75) differs from the pooled one (7/12)."""
    from run_utils import load_pipeline

    pipeline = load_pipeline(semantic_run.config_path)
    model = pipeline.model
    cameras = pipeline.datamanager.eval_dataset.cameras
    h, w = int(cameras.height[0]), int(cameras.width[0])
    n_cls = model.semantic_classes()
    gt = [torch.zeros(h, w, dtype=torch.long), torch.ones(h, w, dtype=torch.long)]
    pred = [torch.zeros(h, w, dtype=torch.long), torch.ones(h, w, dtype=torch.long)]
    pred[1][:, : w // 2] = 0  # view 1: half of class 1 predicted as class 0
    calls = iter(range(2))

    def fake_outputs(camera, obb_box=None):
        k = next(calls)
        logits = torch.nn.functional.one_hot(pred[k], n_cls).float()
        return {"rgb": torch.zeros(h, w, 3), "depth": torch.ones(h, w, 1), "accumulation": torch.ones(h, w, 1),
                "semantics": logits, "semantics_colormap": torch.zeros(h, w, 3)}  # fmt: skip

    model.get_outputs_for_camera = fake_outputs
    loader = [(cameras[k : k + 1], {"image": torch.zeros(h, w, 3), "semantics": gt[k][..., None]}) for k in range(2)]
    result = pipeline.get_average_image_metrics(loader, image_prefix="eval")
    per_image = [segmentation_scores(confusion_matrix(p, g, n_cls))["miou"] for p, g in zip(pred, gt, strict=True)]
    assert per_image == pytest.approx([1.0, 0.5])
    # pooled: class 0 has IoU N / 1.5N, class 1 has 0.5
    assert result["miou"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert abs(result["miou"] - np.mean(per_image)) > 0.1


# ------------------------------------------------------------------------------------------- ns-render content
def _render(config_path, out, names):
    from nerfstudio.scripts.render import DatasetRender

    DatasetRender(
        load_config=config_path, output_path=out, split="test", rendered_output_names=names, image_format="png"
    ).main()
    return {name: sorted((out / "test" / name).rglob("*.*")) for name in names}


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.mark.parametrize("run_name", ["jnerf_run", "features_run"])
def test_ns_render_outputs_have_content(run_name, request, room48, tmp_path):
    run = request.getfixturevalue(run_name)
    names = ["rgb", "raw-depth"] + (["features_pca"] if run_name == "features_run" else [])
    files = _render(run.config_path, tmp_path, names)
    frames = [2 + 5 * k for k in range(8)]  # room48's test frames
    assert len(files["rgb"]) == len(frames) == len(files["raw-depth"])
    from run_utils import load_pipeline

    pipeline = load_pipeline(run.config_path)
    cameras = pipeline.datamanager.eval_dataset.cameras
    to_truth = []
    for path in files["rgb"]:
        frame = int(path.stem.split("_")[-1])  # files are named after the dataset's images (rgb_<frame>)
        k = frames.index(frame)
        rendered = torch.from_numpy(_png(path)[..., :3] / 255.0)
        truth = torch.from_numpy(_png(room48 / "rgb" / f"rgb_{frame}.png") / 255.0)
        to_truth.append(psnr(rendered, truth))
        with torch.no_grad():
            direct = pipeline.model.get_outputs_for_camera(cameras[k : k + 1])["rgb"].clamp(0, 1)
        assert psnr(rendered, direct) > 35.0, path  # the file is the model's render of that camera (8-bit)
    assert np.mean(to_truth) > 15.0, to_truth  # measured ~19 dB mean (single views down to ~13)
    for path in files["raw-depth"]:
        with gzip.open(path, "rb") as fh:
            depth = np.load(fh)
        assert np.isfinite(depth).all() and (depth > 0).all() and depth.std() > 0.01
    if "features_pca" in files:
        for path in files["features_pca"]:
            img = _png(path)[..., :3].astype(float)
            assert img.reshape(-1, 3).std(axis=0).min() > 10, path  # not constant: the PCA colours vary
