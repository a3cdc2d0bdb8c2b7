"""Selection and edit kernels against their twins, per-render options that never leak into training, and queries /
edits / jn-query on the session's trained runs."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.render_options import DEFAULT, Edit, RenderOptions, Selection, load_edit, rendering, thread_options
from jacobinerf_ns.selection import (
    perturbed_colors,
    perturbed_colors_reference,
    recolor_delta,
    resonance_score,
    resonance_score_reference,
)


# ----------------------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("mode", ["cosine", "response"])
def test_resonance_score_matches_its_loop(mode, device):
    g = torch.Generator().manual_seed(0)
    jac = torch.randn(9, 3, 5, generator=g, dtype=torch.float64)
    direction = torch.randn(3, 5, generator=g, dtype=torch.float64)
    fast = resonance_score(jac.to(device), direction.to(device), mode, reference=2.5).cpu()
    assert torch.allclose(fast, resonance_score_reference(jac, direction, mode, 2.5), atol=1e-12)
    assert bool(((fast >= 0) & (fast <= 1)).all())
    if mode == "cosine":  # a pixel whose Jacobian is the direction (or its negative) resonates fully
        assert torch.allclose(
            resonance_score(torch.stack([direction, -2 * direction]), direction), torch.ones(2, dtype=torch.float64)
        )


def test_perturbed_colours_equal_a_perturbed_layer():
    g = torch.Generator().manual_seed(1)
    layer = torch.nn.Linear(5, 3).double()
    hidden = torch.randn(4, 7, 5, generator=g, dtype=torch.float64)
    delta = torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.3
    preact = layer(hidden)
    ref = perturbed_colors_reference(preact, hidden, delta, layer.weight, layer.bias)
    assert torch.allclose(perturbed_colors(preact, hidden, delta), ref, atol=1e-12)
    direction = torch.randn(3, 5, dtype=torch.float64)
    assert torch.allclose(recolor_delta(direction, (1.0, 0.5, 0.0), 2.0)[1], direction[1])
    assert torch.equal(recolor_delta(direction, (1.0, 0.5, 0.0), 2.0)[2], torch.zeros(5, dtype=torch.float64))


def test_thread_options_are_per_thread_and_restored():
    model, other = object(), object()
    opts = RenderOptions(jacobians=True)
    seen = {}

    def worker():
        seen["worker"] = thread_options(model)

    with rendering(model, opts):
        assert thread_options(model) is opts and thread_options(other) is None
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen["worker"] is None and thread_options(model) is None


def test_edit_json_round_trip(tmp_path):
    edit = Edit(kind="recolor", vector=torch.randn(3, 4), threshold=0.3, color=(0.1, 0.2, 0.3), strength=2.0,
                target="jacobian")  # fmt: skip
    edit.save(tmp_path / "e.json")
    back = load_edit(tmp_path / "e.json")
    assert torch.allclose(back.vector, edit.vector) and back.kind == "recolor" and back.target == "jacobian"
    assert back.color == (0.1, 0.2, 0.3) and back.threshold == 0.3 and back.strength == 2.0
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "recolor"}))
    with pytest.raises(Exception, match="unreadable edit file"):
        load_edit(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------- on trained runs
def test_a_selection_render_never_reaches_a_training_step(jnerf_pipeline):
    """The viewer's options live on the model, but only nerfstudio's viewer render thread reads them; a training
    step, even while another thread renders a selection, renders with none."""
    model, dm = jnerf_pipeline.model, jnerf_pipeline.datamanager
    direction = torch.randn(3, model.field.color_dim)
    model.viewer_options = RenderOptions(selection=Selection(kind="jacobian", vector=direction))
    ray_bundle, _ = dm.next_train(0)
    started, done = threading.Event(), threading.Event()

    def render_elsewhere():
        with rendering(model, RenderOptions(selection=Selection(kind="jacobian", vector=direction))):
            started.set()
            done.wait(10)

    t = threading.Thread(target=render_elsewhere)
    t.start()
    started.wait(10)
    try:
        model.train()
        assert model.render_options() is DEFAULT
        out = model(ray_bundle[:64])
        assert "selection_score" not in out and "selection" not in out
        model.eval()
        assert model.render_options() is DEFAULT  # not the viewer thread, no option of this thread
    finally:
        done.set()
        t.join()
        model.viewer_options = None


def _mask_iou(a, b) -> float:
    return float((a & b).sum()) / max(1, float((a | b).sum()))


def test_click_selection_contains_the_click_and_is_seeded_by_its_instance(features_pipeline):
    from jacobinerf_ns import query as q

    model, dm = features_pipeline.model, features_pipeline.datamanager
    cam = dm.eval_dataset.cameras[0:1]
    inst = dm.eval_scene.instance[0].long()
    ys, xs = torch.nonzero(inst == torch.mode(inst[inst > 0].flatten()).values, as_tuple=True)
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    query = q.query_from_click(model, cam, y, x)
    sel = q.select(model, cam, query, threshold=0.9)
    assert float(sel["selection_score"][y, x]) == pytest.approx(1.0, abs=1e-4) and bool(sel["selection"][y, x])
    # the clicked instance is selected far more than the rest of the image
    inside = sel["selection"][inst == inst[y, x]].float().mean()
    outside = sel["selection"][inst != inst[y, x]].float().mean()
    assert inside > outside + 0.2, (float(inside), float(outside))


def test_feature_delete_and_extract_change_geometry_only_where_matched(features_pipeline):
    from jacobinerf_ns import query as q

    model, dm = features_pipeline.model, features_pipeline.datamanager
    cam = dm.eval_dataset.cameras[1:2]
    out = q.render(model, cam)
    h, w = out["rgb"].shape[:2]  # the centre of test view 1 of room48 is a shelf
    query = q.query_from_click(model, cam, h // 2, w // 2)
    sel = q.select(model, cam, query, threshold=0.8)["selection"]
    assert 0.02 < float(sel.float().mean()) < 0.9
    deleted = q.render_edit(model, cam, q.make_edit(query, "delete", threshold=0.8))
    extracted = q.render_edit(model, cam, q.make_edit(query, "extract", threshold=0.8))
    acc = out["accumulation"][..., 0].cpu()
    # deletion (σ = 0 where a point matches) removes density where the query matches and not elsewhere
    drop = acc - deleted["accumulation_edited"][..., 0]
    assert float(drop[sel].mean()) > 3 * float(drop[~sel].mean()) + 0.02, (
        float(drop[sel].mean()),
        float(drop[~sel].mean()),
    )
    # extraction (σ kept only where a point matches): rays that see no matching point lose more of their density
    lost = acc - extracted["accumulation_edited"][..., 0]
    assert float(lost[~sel].mean()) > float(lost[sel].mean()) + 0.1, (float(lost[sel].mean()), float(lost[~sel].mean()))


def test_feature_recolor_changes_only_the_selection(features_pipeline):
    from jacobinerf_ns import query as q

    model, dm = features_pipeline.model, features_pipeline.datamanager
    cam = dm.eval_dataset.cameras[1:2]
    h, w = int(cam.height), int(cam.width)
    query = q.query_from_click(model, cam, h // 2, w // 2)
    sel = q.select(model, cam, query, threshold=0.8)["selection"]
    edited = q.render_edit(model, cam, q.make_edit(query, "recolor", threshold=0.8, color=(0.0, 0.0, 1.0)))
    change = (edited["rgb_edited"] - edited["rgb"]).abs().sum(dim=-1)
    assert float(change[sel].mean()) > 3 * float(change[~sel].mean()) + 1e-3
    blue_gain = (edited["rgb_edited"][..., 2] - edited["rgb"][..., 2])[sel].mean()
    assert float(blue_gain) > 0


def test_jacobinerf_recolor_edit_is_the_papers_theta_d_edit(jnerf_pipeline):
    """rgb_edited is the render with θᴰ + diag(c)·G·t (checked against really changing the parameters)."""
    from jacobinerf_ns import query as q
    from jacobinerf_ns.propagation import perturbed_weight

    model, dm = jnerf_pipeline.model, jnerf_pipeline.datamanager
    cam = dm.eval_dataset.cameras[0:1]
    query = q.query_from_click(model, cam, 10, 20)
    edit = q.make_edit(query, "recolor", color=(0.0, 1.0, 0.5), strength=2.0)
    edited = q.render_edit(model, cam, edit)["rgb_edited"]
    with perturbed_weight(model.field.color_out.weight, recolor_delta(query.vector, edit.color, 2.0)):
        really = q.render(model, cam)["rgb"].cpu()
    assert torch.allclose(edited, really, atol=1e-5)
    with pytest.raises(ConfigError, match="can recolour but not delete"):
        q.make_edit(query, "delete")


# ------------------------------------------------------------------------------------------------- jn-query
def test_jn_query_writes_masks_ply_and_a_replayable_edit(features_run, tmp_path):
    import trimesh
    from nerfstudio.scripts.render import DatasetRender
    from PIL import Image

    from jacobinerf_ns.scripts.query import QueryCommand

    out = tmp_path / "q"
    record = QueryCommand(
        load_config=features_run.config_path, click=(0, 24, 18), threshold=0.8, edit="recolor",
        color=(0.0, 0.0, 1.0), max_views=2, output_dir=out,
    ).main()  # fmt: skip
    masks = [np.asarray(Image.open(out / f"mask_{i:04d}.png")) > 0 for i in range(2)]
    cloud = trimesh.load(out / "selection.ply")
    assert len(cloud.vertices) == sum(int(m.sum()) for m in masks) == record["points"] > 0
    assert cloud.colors.shape == (len(cloud.vertices), 4)  # per-vertex colours read by trimesh
    for name in ("similarity_0000.png", "overlay_0001.png", "edited_0000.png", "edit.json", "query.json"):
        assert (out / name).is_file(), name
    # ns-render replays the saved edit from config_edit.yml: the same image as jn-query's
    DatasetRender(load_config=out / "config_edit.yml", output_path=tmp_path / "r", split="test",
                  rendered_output_names=["rgb_edited"], image_format="png").main()  # fmt: skip
    rendered = sorted((tmp_path / "r" / "test" / "rgb_edited").rglob("*.png"))
    assert len(rendered) == 8
    first = next(p for p in rendered if p.stem.endswith("_2"))  # test view 0 is frame 2
    a = np.asarray(Image.open(first))[..., :3].astype(int)
    b = np.asarray(Image.open(out / "edited_0000.png"))[..., :3].astype(int)
    assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"click": (0, 999, 1)}, "outside the 48x36 image"),
        ({"click": (42, 1, 1)}, r"view 42 is not a train view \(0\.\.7\)"),
        ({"text": "chair"}, "has no text encoder"),
        ({}, "give exactly one of"),
        ({"click": (0, 1, 1), "by": "jacobian"}, "offers feature queries, not jacobian"),
    ],
)
def test_jn_query_bad_input_is_one_line(features_run, tmp_path, options, message):
    from jacobinerf_ns.scripts.query import QueryCommand

    with pytest.raises(ConfigError, match=message) as info:
        QueryCommand(load_config=features_run.config_path, output_dir=tmp_path, **options).main()
    assert "\n" not in str(info.value)


def test_jn_query_on_a_run_without_features_or_jacobians(semantic_run, tmp_path):
    from jacobinerf_ns.scripts.query import QueryCommand

    with pytest.raises(ConfigError, match="neither a feature head nor colour Jacobians"):
        QueryCommand(load_config=semantic_run.config_path, click=(0, 1, 1), output_dir=tmp_path).main()
