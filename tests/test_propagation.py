"""Label propagation: kernels vs their twins, the protocol, metrics by hand, a tiny trained run, CLI bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from jacobinerf_ns.aggregator import train_aggregator
from jacobinerf_ns.annotations import load_annotation, make_annotation
from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.metrics import confusion_matrix, segmentation_scores
from jacobinerf_ns.propagation import (
    first_order_response,
    first_order_response_reference,
    label_directions,
    perturbed_weight,
    postprocess_2d,
    sample_response_3d,
    sample_response_3d_reference,
    unit_directions,
)


def test_label_directions_are_class_means_of_mean_rgb_jacobians():
    J = torch.randn(5, 3, 4, dtype=torch.float64)
    labels = torch.tensor([1, 0, 1, 1, 0])
    G = label_directions(J, labels, 2)
    assert torch.allclose(G[0], (J[1] + J[4]) / 2 / 3)
    assert torch.allclose(G[1], (J[0] + J[2] + J[3]) / 3 / 3)
    with pytest.raises(ValueError, match="label index"):
        label_directions(J, labels, 3)


def test_first_order_and_3d_responses_match_loops(device):
    g = torch.Generator().manual_seed(0)
    J = torch.randn(6, 3, 5, generator=g, dtype=torch.float64)
    G = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    fast = first_order_response(J.to(device), G.to(device), 0.1).cpu()
    assert torch.allclose(fast, first_order_response_reference(J, G, 0.1))
    h = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    w = torch.rand(3, 7, 1, generator=g, dtype=torch.float64)
    fast = sample_response_3d(h.to(device), w.to(device), G.to(device)).cpu()
    assert torch.allclose(fast, sample_response_3d_reference(h, w, G))


def test_cosine_response_matches_its_loop_and_ignores_scale(device):
    from jacobinerf_ns.propagation import cosine_response, cosine_response_reference

    g = torch.Generator().manual_seed(3)
    J = torch.randn(7, 3, 5, generator=g, dtype=torch.float64)
    G = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    fast = cosine_response(J.to(device), G.to(device)).cpu()
    assert torch.allclose(fast, cosine_response_reference(J, G), atol=1e-12)
    scaled = cosine_response(J * torch.rand(7, 1, 1, dtype=torch.float64), G * 10)
    assert torch.allclose(scaled, fast, atol=1e-12)  # no norm enters the read-out


def test_unit_directions_remove_the_scale_of_each_label():
    g = torch.Generator().manual_seed(2)
    G = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    U = unit_directions(G)
    for k in range(4):
        gbar = sum(G[k, c] for c in range(3)) / 3
        assert torch.allclose(U[k], G[k] / torch.linalg.vector_norm(gbar))
    # 3D responses no longer depend on how strongly each label's direction is scaled
    h = torch.rand(2, 6, 5, generator=g, dtype=torch.float64)
    w = torch.rand(2, 6, 1, generator=g, dtype=torch.float64)
    scaled = G * torch.tensor([1.0, 10.0, 0.1, 3.0], dtype=torch.float64)[:, None, None]
    assert torch.allclose(sample_response_3d(h, w, unit_directions(scaled)), sample_response_3d(h, w, U))
    with pytest.raises(ValueError, match="are zero"):
        unit_directions(torch.zeros(2, 3, 5))


def test_postprocess_matches_the_official_opencv_steps():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(3, 9, 11, generator=g, dtype=torch.float64)
    maps[2] *= 0.001  # flat and faint: must be zeroed
    out = postprocess_2d(maps)
    for k in range(3):
        d = maps[k].numpy().copy()
        d[d > 0.8] = 0.8
        d = cv2.GaussianBlur(d, (3, 3), 0)
        d = d / (np.max(d) + 1e-7)
        if np.std(d) < 0.05 and np.mean(d) < 0.01:
            d = np.zeros_like(d)
        assert np.allclose(out[k].numpy(), d, atol=1e-9), k
    assert float(out[2].abs().max()) > 0  # after /max a faint map is not flat any more: kept, like the official code


def test_perturbed_weight_restores_exactly():
    layer = torch.nn.Linear(4, 3)
    before = layer.weight.detach().clone()
    with perturbed_weight(layer.weight, torch.ones(3, 4)):
        assert torch.allclose(layer.weight, before + 1)
    assert torch.equal(layer.weight, before)


def test_segmentation_scores_by_hand():
    gt = torch.tensor([0, 0, 1, 1, 2, -1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2, 2])
    conf = confusion_matrix(pred, gt, 4)  # class 3 never occurs: absent, not counted
    assert conf.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    s = segmentation_scores(conf)
    iou = [1 / 3, 2 / 3, 1 / 2]
    assert s["miou"] == pytest.approx(sum(iou) / 3)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["class_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert s["per_class_iou"][3] is None and s["num_classes_present"] == 3


def test_protocol_clicks_one_pixel_per_present_label_seeded():
    gt = torch.full((6, 8), -1)
    gt[:3, :4], gt[3:, :4], gt[:, 4:] = 2, 5, 7
    a = make_annotation(gt, "semantic", "sparse", view=0, seed=3, names={2: "a", 5: "b", 7: "c"})
    assert a.label_ids == [2, 5, 7] and a.label_names == ["a", "b", "c"]
    assert len(a.pixels) == 3 and sorted(a.labels.tolist()) == [0, 1, 2]
    for (y, x), k in zip(a.pixels.tolist(), a.labels.tolist(), strict=True):
        assert int(gt[y, x]) == a.label_ids[k]
    b = make_annotation(gt, "semantic", "sparse", view=0, seed=3, names={})
    assert torch.equal(a.pixels, b.pixels)
    seeds = {tuple(make_annotation(gt, "semantic", "sparse", 0, s, {}).pixels.flatten().tolist()) for s in range(6)}
    assert len(seeds) > 1
    inst = torch.zeros(6, 8, dtype=torch.long)
    inst[:, 4:] = 11
    c = make_annotation(inst, "instance", "dense", view=2, seed=0, names={})
    assert c.label_ids == [11] and len(c.pixels) == 24  # void instance 0 is not a label
    assert c.to_index(torch.tensor([0, 11, 12])).tolist() == [-1, 0, -1]


def test_annotation_json_round_trip_and_bad_input(tmp_path):
    gt = torch.tensor([[0, 1], [2, -1]])
    a = make_annotation(gt, "semantic", "sparse", view=1, seed=0, names={})
    a.save(tmp_path / "a.json")
    b = load_annotation(tmp_path / "a.json", (2, 2), known_labels={0, 1, 2})
    assert b.label_ids == a.label_ids and torch.equal(b.pixels, a.pixels) and torch.equal(b.labels, a.labels)
    data = json.loads((tmp_path / "a.json").read_text())
    data["pixels"].append([5, 0, 1])
    (tmp_path / "out.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"\(y=5, x=0\) is outside the 2x2 image"):
        load_annotation(tmp_path / "out.json", (2, 2))
    data["pixels"][-1] = [0, 0, 9]
    (tmp_path / "unknown.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="label 9 .* is not a known semantic id"):
        load_annotation(tmp_path / "unknown.json", (2, 2), known_labels={0, 1, 2})


def test_aggregator_learns_a_linear_rule():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(600, 3, generator=g)
    y = x.argmax(dim=1)
    y[:50] = -1
    agg = train_aggregator(x, y, steps=300)
    assert (agg(x).argmax(dim=1)[50:] == y[50:]).float().mean() > 0.9


# ------------------------------------------------------------------------------------------ on a trained run
@pytest.fixture(scope="module")
def tiny_run(jnerf_run):
    """The session's shaped jacobinerf-tiny run (conftest), loaded as jn-propagate loads it."""
    from run_utils import load_pipeline

    return jnerf_run.config_path, load_pipeline(jnerf_run.config_path)


def _labeller(pipeline, method, seed=0, setting="sparse", t=1e-3):
    from jacobinerf_ns.eval.protocol import label_names as _label_names
    from jacobinerf_ns.propagator import JacobiLabeller, ViewSet

    dm = pipeline.datamanager
    names = _label_names(pipeline, dm.train_scene, "semantic")
    ann = make_annotation(dm.train_scene.semantics[0].cpu(), "semantic", setting, 0, seed, names)
    targets = ViewSet(dm.eval_dataset.cameras, dm.eval_scene.semantics.cpu())
    return JacobiLabeller(pipeline.model, ann, dm.train_dataset.cameras, method, targets, perturb_t=t), ann, targets


def test_first_order_agrees_with_perturbation_for_small_t(tiny_run):
    from jacobinerf_ns.propagation import first_order_response, perturbation_response
    from jacobinerf_ns.propagator import render_view
    from jacobinerf_ns.render_options import RenderOptions

    _, pipeline = tiny_run
    lab, ann, targets = _labeller(pipeline, "2d", t=1e-3)
    model, cam = pipeline.model, targets.camera(0)
    G = lab.directions
    jac = render_view(model, cam, RenderOptions(jacobians=True))["jacobian"]
    h, w, _ = jac.shape
    first = first_order_response(jac.view(h * w, 3, -1).double(), G.double(), 1e-3).T
    base = render_view(model, cam)["rgb"].double()
    before = model.field.color_out.weight.detach().clone()
    for k in range(ann.num_labels):
        # the in-render perturbation (2d-perturb's path) against really perturbing the parameters (its twin)
        in_render = render_view(model, cam, RenderOptions(weight_delta=1e-3 * G[k]))["rgb_perturbed"].double()
        with perturbed_weight(model.field.color_out.weight, 1e-3 * G[k]):
            really = render_view(model, cam)["rgb"].double()
        assert torch.allclose(in_render, really, atol=1e-6)
        pert = perturbation_response(in_render, base).flatten()
        rel = (pert - first[k]).abs().max() / first[k].abs().max()
        assert rel < 0.05, (k, float(rel))
    assert torch.equal(model.field.color_out.weight, before)


class _Permuted:
    """A control labeller: another labeller's predictions with the label indices shuffled."""

    def __init__(self, labeller, num_labels: int, seed: int = 0) -> None:
        self.labeller = labeller
        self.perm = torch.randperm(num_labels, generator=torch.Generator().manual_seed(seed))

    def predict(self, view: int):
        return self.perm[self.labeller.predict(view)]


@pytest.mark.parametrize("method", ["3d", "2d"])
def test_propagation_is_seeded_and_beats_a_shuffled_label_control(tiny_run, method):
    from jacobinerf_ns.propagator import evaluate_labeller

    _, pipeline = tiny_run
    lab, ann, targets = _labeller(pipeline, method)
    again, ann_again, _ = _labeller(pipeline, method)
    assert torch.equal(ann_again.pixels, ann.pixels) and torch.equal(again.predict(0), lab.predict(0))
    _, other, _ = _labeller(pipeline, method, seed=1)
    assert not torch.equal(other.pixels, ann.pixels)
    result = evaluate_labeller(lab, targets, ann)
    control = evaluate_labeller(_Permuted(lab, ann.num_labels), targets, ann)
    assert result["views"] == len(targets) and result["num_classes"] == ann.num_labels
    assert result["accuracy"] > control["accuracy"] + 0.1, (result["accuracy"], control["accuracy"])


def test_dense_aggregator_reproduces_the_labelled_view(tiny_run):
    from jacobinerf_ns.propagator import ViewSet

    _, pipeline = tiny_run
    dm = pipeline.datamanager
    lab, ann, _ = _labeller(pipeline, "3d", setting="dense")
    assert lab.aggregator is not None
    gt = ann.to_index(dm.train_scene.semantics[0].cpu())
    lab.targets = ViewSet(dm.train_dataset.cameras[0:1], dm.train_scene.semantics[0:1].cpu())
    pred = lab.predict(0)
    valid = gt >= 0
    assert (pred[valid] == gt[valid]).float().mean() > 0.7  # it was fitted on exactly this view


def test_cli_bad_inputs(tiny_run, semantic_run, tmp_path):
    from jacobinerf_ns.errors import DataError
    from jacobinerf_ns.scripts.propagate import Propagate

    config_path, _ = tiny_run
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"target": "semantic", "view": 0, "pixels": [[0, 999, 0]]}))
    with pytest.raises(ConfigError, match="outside the 48x36 image"):
        Propagate(load_config=config_path, annotations=bad, output_path=tmp_path / "o.json").main()
    bad.write_text(json.dumps({"target": "semantic", "view": 0, "pixels": [[0, 0, 99]]}))
    with pytest.raises(ConfigError, match="label 99"):
        Propagate(load_config=config_path, annotations=bad, output_path=tmp_path / "o.json").main()
    with pytest.raises(DataError, match="run config not found"):
        Propagate(load_config=tmp_path / "nope.yml").main()
    with pytest.raises(ConfigError, match="has no colour Jacobian head"):
        Propagate(load_config=semantic_run.config_path, output_path=tmp_path / "o.json").main()


def test_cli_writes_scores_and_label_images(tiny_run, tmp_path):
    from jacobinerf_ns.scripts.propagate import Propagate

    config_path, _ = tiny_run
    out = tmp_path / "p.json"
    result = Propagate(
        load_config=config_path,
        method="2d",
        max_views=2,
        output_path=out,
        render_output_path=tmp_path / "labels",
        save_annotations=tmp_path / "ann.json",
    ).main()
    saved = json.loads(out.read_text())
    assert "synthetic" in saved["teacher"] and saved["views"] == 2
    # the scores in the JSON are those of the label images it wrote (uint16 label ids), against the test labels
    from PIL import Image

    dm = tiny_run[1].datamanager
    ann = json.loads((tmp_path / "ann.json").read_text())
    assert ann["setting"] == "sparse" and len(ann["pixels"]) == len(ann["label_ids"])
    lut = torch.full((max(ann["label_ids"]) + 2,), -1, dtype=torch.long)
    lut[torch.tensor(ann["label_ids"])] = torch.arange(len(ann["label_ids"]))
    conf = 0
    for i in range(2):
        ids = torch.from_numpy(np.asarray(Image.open(tmp_path / "labels" / f"labels_{i:04d}.png")).astype(np.int64))
        assert set(ids.unique().tolist()) <= set(ann["label_ids"])
        gt = dm.eval_scene.semantics[i].cpu().long()
        gt_index = torch.where((gt >= 0) & (gt < len(lut) - 1), lut[gt.clamp(0, len(lut) - 1)], torch.tensor(-1))
        conf = conf + confusion_matrix(lut[ids], gt_index, len(ann["label_ids"]))
    scores = segmentation_scores(conf)
    assert saved["miou"] == pytest.approx(scores["miou"]) and result["accuracy"] == pytest.approx(scores["accuracy"])
    assert len(list((tmp_path / "labels").glob("labels_color_*.png"))) == 2
