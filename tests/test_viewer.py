"""The viewer panel without a browser: click geometry and label kernels against their references, selection / labels
/ edits through the panel on the session's trained runs, bad input as panel messages, nerfstudio's element discovery,
and a click while ``ns-train --vis viewer`` trains (tests/test_viewer_browser.py drives a real browser)."""

from __future__ import annotations

import faulthandler
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.viewer.viewer_elements import ViewerClick

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.viewer import panel_of
from jacobinerf_ns.viewer.geometry import VISER_SCALE, project_to_pixel, ray_camera, viser_pose
from jacobinerf_ns.viewer.labels import nearest_labels, nearest_labels_reference
from jacobinerf_ns.viewer.session import NothingHit

SELECTION_KEYS = ("selection_score", "selection", "selection_overlay")


# ----------------------------------------------------------------------------------------------------- kernels
def test_nearest_labels_matches_its_loop(device):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(50, 6, generator=g, dtype=torch.float64)
    keys = torch.randn(7, 6, generator=g, dtype=torch.float64) * torch.rand(7, 1, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 2, 0, 3, 1])
    fast = nearest_labels(feats.to(device), keys.to(device), labels.to(device)).cpu()
    ref = nearest_labels_reference(feats, keys, labels)
    assert torch.equal(fast, ref)
    assert len(set(ref.tolist())) > 2  # not a constant answer
    # scale-free: a key scaled up does not win by its norm
    assert torch.equal(nearest_labels(feats, keys * 10, labels), ref)


def _random_camera(g: torch.Generator) -> Cameras:
    q = torch.randn(4, generator=g, dtype=torch.float64)
    q = q / q.norm()
    w, x, y, z = q.tolist()
    rot = torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    c2w = torch.cat([rot, torch.randn(3, 1, generator=g, dtype=torch.float64)], dim=1).float()
    return Cameras(camera_to_worlds=c2w[None], fx=31.0, fy=27.0, cx=20.3, cy=14.6, width=41, height=29,
                   camera_type=CameraType.PERSPECTIVE)  # fmt: skip


def test_project_to_pixel_inverts_nerfstudio_ray_generation():
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        cam = _random_camera(g)
        rays = cam.generate_rays(camera_indices=0, keep_shape=True)
        for y, x in [(0, 0), (28, 40), (13, 7), (5, 33)]:
            depth = 0.2 + 3 * float(torch.rand(1, generator=g))
            point = rays.origins[y, x] + rays.directions[y, x] * depth
            assert project_to_pixel(cam, point) == (y, x)
        c2w = cam.camera_to_worlds[0]
        behind = c2w[:, 3] + c2w[:, 2] * 1.0  # +z of an OpenGL camera is behind it
        assert project_to_pixel(cam, behind) is None
        outside = rays.origins[0, 0] + (rays.directions[0, 0] - 0.5 * c2w[:, 0]) * 2.0  # left of the image
        assert project_to_pixel(cam, outside) is None


def test_ray_camera_renders_exactly_the_click_ray():
    g = torch.Generator().manual_seed(4)
    for _ in range(4):
        origin, direction = torch.randn(3, generator=g), torch.randn(3, generator=g)
        for d in (direction, torch.tensor([0.0, 0.0, -2.0])):  # also straight down (the helper axis switches)
            rays = ray_camera(origin, d).generate_rays(camera_indices=0)
            assert torch.allclose(rays.origins[0, 0], origin, atol=1e-6)
            assert torch.allclose(rays.directions[0, 0], d / d.norm(), atol=1e-6)


def test_viser_pose_is_the_camera_the_viewer_renders(jnerf_pipeline):
    """ "Go to label view" sets the viewer camera from :func:`viser_pose`; the viewer's own ``get_camera`` (what its
    render thread renders) gives the training camera back."""
    import viser.transforms as vtf
    from nerfstudio.viewer.utils import CameraState, get_camera

    cams = jnerf_pipeline.datamanager.train_dataset.cameras
    for view in (0, 3):
        cam = cams[view : view + 1]
        position, wxyz, up, fov = viser_pose(cam)
        rot = torch.tensor((vtf.SO3(wxyz=wxyz) @ vtf.SO3.from_x_radians(np.pi)).as_matrix())
        c2w = torch.cat([rot, torch.tensor(position)[:, None] / VISER_SCALE], dim=1)
        h, w = int(cam.height), int(cam.width)
        state = CameraState(fov=fov, aspect=w / h, c2w=c2w, camera_type=CameraType.PERSPECTIVE)
        seen = get_camera(state, h, w)
        assert torch.allclose(seen.camera_to_worlds[0].float(), cam.camera_to_worlds[0].cpu(), atol=1e-5)
        assert float(seen.fy) == pytest.approx(float(cam.fy), rel=1e-5)
        assert float(seen.fx) == pytest.approx(float(cam.fx), rel=1e-5)
        assert np.allclose(up, cam.camera_to_worlds[0, :, 1].cpu().numpy(), atol=1e-6)


def test_viewer_fixes_keep_the_render_thread_alive_on_bool_and_two_channel_outputs():
    from nerfstudio.utils import colormaps
    from nerfstudio.viewer import control_panel

    from jacobinerf_ns.viewer.nerfstudio_fixes import apply_viewer_fixes

    apply_viewer_fixes()
    apply_viewer_fixes()  # idempotent
    assert control_panel._get_colormap_options(1, torch.bool) == ["default"]
    assert "turbo" in control_panel._get_colormap_options(1, torch.float32)  # unchanged otherwise
    mask = torch.zeros(4, 5, 1, dtype=torch.bool)
    mask[1, 2] = True
    shown = colormaps.apply_colormap(mask)
    assert torch.equal(shown[1, 2], torch.ones(3)) and torch.equal(shown[0, 0], torch.zeros(3))
    two = torch.rand(4, 5, 2) * 3
    rgb = colormaps.apply_colormap(two)
    assert rgb.shape == (4, 5, 3) and float(rgb.max()) <= 1.0 and torch.equal(rgb[..., 2], torch.zeros(4, 5))


# ------------------------------------------------------------------------------------------- on trained runs
def _click(pipeline, view: int, y: int, x: int) -> ViewerClick:
    """The viewer's click through pixel (y, x) of training view ``view`` (origin in scene units, as nerfstudio's
    ``register_pointer_cb`` passes it)."""
    cam = pipeline.datamanager.train_dataset.cameras[view : view + 1]
    rays = cam.generate_rays(camera_indices=0, keep_shape=True)
    w, h = int(cam.width), int(cam.height)
    return ViewerClick(
        tuple(rays.origins[y, x].tolist()), tuple(rays.directions[y, x].tolist()), ((x + 0.5) / w, (y + 0.5) / h)
    )


def _largest_object(pipeline, view: int = 0):
    """Mask and interior pixel of the largest instance of a training view that is not floor or ceiling (the
    browser test's object)."""
    from scipy import ndimage

    dm = pipeline.datamanager
    inst = dm.train_scene.instance[view].long().numpy()
    sem = dm.train_scene.semantics[view].long().numpy()
    names = pipeline.model.class_names
    best = None
    for i in np.unique(inst[inst > 0]):
        mask = inst == i
        if names[np.bincount(sem[mask].clip(min=0)).argmax()] not in ("floor", "ceiling"):
            best = mask if best is None or mask.sum() > best.sum() else best
    depth = ndimage.distance_transform_edt(np.pad(best, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    return best, int(y), int(x)


@pytest.fixture
def panel(request):
    """The panel of a loaded run, connected without a viewer; the model's viewer options are reset afterwards."""
    pipeline = request.getfixturevalue(request.param)
    panel = panel_of(pipeline.model)
    panel.connect(pipeline)
    yield panel
    pipeline.model.viewer_options = None


class RenderStateMachine(threading.Thread):
    """A thread whose class has the name of nerfstudio's viewer render thread (what ``render_options`` checks)."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.result = fn, None

    def run(self):
        self.result = self.fn()


def _viewer_render(model, camera) -> dict:
    from jacobinerf_ns import query as q

    thread = RenderStateMachine(lambda: q.render(model, camera))
    thread.start()
    thread.join(60)
    return thread.result


@pytest.mark.parametrize(("panel", "bound"), [("jnerf_pipeline", 0.6), ("features_pipeline", 0.6)], indirect=["panel"])
def test_a_click_through_the_panel_selects_the_object_in_viewer_renders_only(panel, bound):
    """Select through the panel's pointer callback: the viewer's renders show the selection of the clicked object
    (IoU against its ground-truth mask; measured 0.77 J-NeRF, 0.73 feature field), other renders and a training
    step do not (the option mechanism itself is tested in tests/test_selection.py)."""
    from jacobinerf_ns import query as q

    session = panel.session
    pipeline, model = session.pipeline, session.model
    gt, y, x = _largest_object(pipeline)
    panel._arm("select")
    panel._on_click(_click(pipeline, 0, y, x))
    assert panel.status.startswith("Selected by"), panel.status
    cam = session.train_cameras[0:1]
    shown = _viewer_render(model, cam)
    sel = shown["selection"][..., 0].cpu().numpy()
    iou = (sel & gt).sum() / (sel | gt).sum()
    assert iou >= bound, iou
    assert "selection_overlay" in shown and shown["selection_overlay"].shape == shown["rgb"].shape
    assert not any(k in q.render(model, cam) for k in SELECTION_KEYS)  # this thread is not the viewer's
    ray_bundle, _ = pipeline.datamanager.next_train(0)
    model.train()
    try:
        out = model(ray_bundle[:64])
    finally:
        model.eval()
    assert not any(k in out for k in SELECTION_KEYS)
    # the threshold slider's callback changes the viewer's selection live
    panel._gui(lambda: panel._set_threshold(0.99))
    tighter = _viewer_render(model, cam)["selection"][..., 0].cpu().numpy()
    assert tighter.sum() < sel.sum() and not (tighter & ~sel).any()


@pytest.mark.parametrize("panel", ["jnerf_pipeline"], indirect=True)
def test_a_click_that_hits_nothing_is_a_panel_message(panel):
    panel._arm("select")
    panel._on_click(ViewerClick((5.0, 5.0, 5.0), (0.577, 0.577, 0.577), (0.5, 0.5)))  # outside, looking away
    assert panel.status.startswith("⚠ the click hits nothing"), panel.status
    assert panel.session.query is None and panel.session.model.viewer_options is None
    with pytest.raises(NothingHit):
        panel.session.pick((5.0, 5.0, 5.0), (1.0, 1.0, 1.0))
    panel._arm("label")
    panel._on_click(ViewerClick((5.0, 5.0, 5.0), (0.577, 0.577, 0.577), (0.5, 0.5)))
    assert panel.status.startswith("⚠ the click hits nothing") and panel.session.clicks == []
    panel._on_click(ViewerClick((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.5, 0.5)))  # not armed: ignored
    assert panel.session.query is None
    panel.b03_view.value = 99
    panel._gui(panel._goto_label_view)
    assert panel.status == "⚠ label view 99 is not a training view (0..7)", panel.status
    panel.b03_view.value = 0
    panel._gui(panel._save_annotations)
    assert panel.status == "⚠ no label clicks yet"
    panel.b01_class.value = "(new class: type it below)"
    panel._arm("label")
    assert panel.status.startswith("⚠ a label needs a class name"), panel.status
    panel._on_click(ViewerClick((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.5, 0.5)))  # not armed
    assert panel.session.clicks == []


def test_a_run_without_jacobians_or_features_says_which_selections_it_offers(semantic_run):
    from run_utils import load_pipeline

    pipeline = load_pipeline(semantic_run.config_path)
    panel = panel_of(pipeline.model)
    assert "offers no click selection" in panel.status and "jacobinerf-features" in panel.status
    assert not panel.a01_select.visible and not panel.b05_label.visible and not panel.c03_recolor.visible
    panel.connect(pipeline)
    panel._arm("select")
    assert "offers no click selection" in panel.status
    with pytest.raises(ConfigError, match="offers no click selection"):
        panel.session.select((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))


@pytest.mark.parametrize("panel", ["jnerf_pipeline", "features_pipeline"], indirect=True)
def test_the_panel_offers_what_the_run_has(panel):
    kind = panel.session.kind
    assert ("resonance" in panel.status) == (kind == "jacobian")
    assert ("feature similarity" in panel.status) == (kind == "feature")
    assert panel.a03_score.visible == (kind == "jacobian") and panel.c02_strength.visible == (kind == "jacobian")
    assert panel.c04_delete.visible == (kind == "feature")


def test_nerfstudio_finds_the_panel_and_checkpoints_do_not(jnerf_pipeline):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    from jacobinerf_ns.viewer.panel import PANEL_ATTRIBUTE

    paths = [p for p, _ in parse_object(jnerf_pipeline, ViewerElement, "Custom Elements")]
    folder = f"Custom Elements/model/{PANEL_ATTRIBUTE}/"
    ours = [p[len(folder) :] for p in paths if p.startswith(folder)]
    assert "a01_select" in ours and "b05_label" in ours and "c07_render" in ours and ours == sorted(ours)
    controls = [c for _, c in parse_object(jnerf_pipeline, ViewerControl, "Custom Elements")]
    assert controls == [panel_of(jnerf_pipeline.model).control]
    assert not any(PANEL_ATTRIBUTE in k for k in jnerf_pipeline.state_dict())
    assert all(m is not panel_of(jnerf_pipeline.model) for m in jnerf_pipeline.modules())


# ----------------------------------------------------------------------------------------------------- labels
def _label_clicks(pipeline) -> list[tuple[int, int, str]]:
    """Interior pixels of three different classes in training view 0, with their class names."""
    from scipy import ndimage

    sem = pipeline.datamanager.train_scene.semantics[0].long().numpy()
    names = pipeline.model.class_names
    counts = np.bincount(sem[sem >= 0].ravel(), minlength=len(names))
    out = []
    for c in np.argsort(-counts)[:3]:
        depth = ndimage.distance_transform_edt(np.pad(sem == c, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(depth.argmax()), depth.shape)
        out.append((int(y), int(x), names[int(c)]))
    return out


@pytest.mark.parametrize("panel", ["jnerf_pipeline"], indirect=True)
def test_label_clicks_round_trip_to_jn_propagate(panel, jnerf_run, tmp_path):
    """Clicks → the annotation JSON → ``jn-propagate --annotations`` reads the same clicks, and its labels of a test
    view are the viewer's live ``labels`` (3D resonance, unit directions)."""
    from jacobinerf_ns.annotations import load_annotation
    from jacobinerf_ns.scripts.propagate import Propagate

    session = panel.session
    pipeline = session.pipeline
    clicks = _label_clicks(pipeline)
    for y, x, name in clicks:
        panel.b01_class.value = name
        panel._arm("label")
        panel._on_click(_click(pipeline, 0, y, x))
        assert panel.status.startswith(f"Label '{name}'"), panel.status
    # a point outside training view 0 (clicked in another view) is refused with a message
    cams = session.train_cameras
    outside = next(
        (v, yy, xx)
        for v in range(1, len(cams))
        for yy, xx in [(18, 2), (18, 45), (2, 24), (33, 24)]
        if _refused(session, pipeline, v, yy, xx)
    )
    panel._arm("label")
    panel._on_click(_click(pipeline, *outside))
    assert panel.status.startswith("⚠ ") and "training view 0" in panel.status, panel.status
    assert len(session.clicks) == 3
    panel._gui(panel._undo)
    assert len(session.clicks) == 2 and panel.status.startswith("Removed label")
    y, x, name = clicks[2]
    panel.b01_class.value = name
    panel._arm("label")
    panel._on_click(_click(pipeline, 0, y, x))

    path = tmp_path / "clicks.json"
    panel.b07_path.value = str(path)
    panel._gui(panel._save_annotations)
    assert panel.status.startswith("Saved 3 clicks") and "--method 2d-cos" in panel.status
    h, w = int(cams.height[0]), int(cams.width[0])
    ann = load_annotation(path, (h, w), known_labels=set(range(len(pipeline.model.class_names))))
    assert ann.view == 0 and sorted(ann.label_names) == sorted(n for *_, n in clicks)
    assert sorted(map(tuple, ann.pixels.tolist())) == sorted((y, x) for y, x, _ in clicks)

    out = tmp_path / "prop"
    result = Propagate(load_config=jnerf_run.config_path, annotations=path, method="2d-cos",
                       max_views=1, output_path=out / "p.json",
                       render_output_path=out).main()  # fmt: skip
    assert result["clicks"] == 3
    from PIL import Image

    theirs = np.asarray(Image.open(out / "labels_0000.png")).astype(np.int64)  # label ids of test view 0
    shown = _viewer_render(session.model, pipeline.datamanager.eval_dataset.cameras[0:1])
    ours = np.asarray(ann.label_ids)[shown["response_cos"].argmax(dim=-1).cpu().numpy()]
    assert (ours == theirs).mean() > 0.999
    colors = session.label_colors(ann.label_ids)
    assert torch.allclose(shown["labels"].cpu(), colors[shown["response_cos"].argmax(dim=-1).cpu()])


def _refused(session, pipeline, view, y, x) -> bool:
    """Whether the click through pixel (y, x) of training view ``view`` hits a point outside training view 0."""
    c = _click(pipeline, view, y, x)
    try:
        hit = session.pick(c.origin, c.direction)
    except NothingHit:
        return False
    return project_to_pixel(session.train_cameras[0:1], hit.point) is None


@pytest.mark.parametrize("panel", ["features_pipeline"], indirect=True)
def test_feature_labels_are_the_nearest_annotated_feature(panel):
    from jacobinerf_ns.eval.protocol import feature_field_labeller
    from jacobinerf_ns.propagator import ViewSet

    session = panel.session
    pipeline = session.pipeline
    for y, x, name in _label_clicks(pipeline)[:2]:
        session.label(_click(pipeline, 0, y, x).origin, _click(pipeline, 0, y, x).direction, name)
    session.label(_click(pipeline, 0, 30, 5).origin, _click(pipeline, 0, 30, 5).direction, "my new class")
    panel._gui(lambda: None)
    ann = session.annotation()
    assert ann.label_ids[-1] == len(pipeline.model.class_names) and ann.label_names[-1] == "my new class"
    dm = pipeline.datamanager
    targets = ViewSet(dm.eval_dataset.cameras, dm.eval_scene.semantics.cpu())
    labeller = feature_field_labeller(session.model, 0, session.train_cameras, targets, ann.pixels, ann.labels)
    expected = session.label_colors(ann.label_ids)[labeller.predict(0)]
    shown = _viewer_render(session.model, targets.camera(0))["labels"].cpu()
    assert (shown - expected).abs().max(dim=-1).values.le(1e-6).float().mean() > 0.999
    assert len(torch.unique(shown.reshape(-1, 3), dim=0)) == 3


# ------------------------------------------------------------------------------------------------------ edits
@pytest.mark.parametrize("panel", ["jnerf_pipeline", "features_pipeline"], indirect=True)
def test_edits_through_the_panel_are_what_jn_query_renders_and_replays(panel, tmp_path):
    from jacobinerf_ns import query as q

    session = panel.session
    pipeline, model = session.pipeline, session.model
    _, y, x = _largest_object(pipeline)
    panel._gui(lambda: panel._edit("recolor"))
    assert panel.status.startswith("⚠ select something first"), panel.status
    panel._arm("select")
    panel._on_click(_click(pipeline, 0, y, x))
    panel._gui(lambda: panel._set_color((0, 0, 255)))
    panel._gui(lambda: panel._edit("recolor"))
    cam = session.train_cameras[0:1]
    shown = _viewer_render(model, cam)["rgb_edited"].cpu()
    expected = q.render_edit(model, cam, q.make_edit(session.query, "recolor", session.threshold, (0.0, 0.0, 1.0),
                                                      session.strength))["rgb_edited"]  # fmt: skip
    assert torch.allclose(shown, expected, atol=1e-6)
    assert float((shown - _viewer_render(model, cam)["rgb"].cpu()).abs().max()) > 0.01
    panel._gui(lambda: panel._edit("delete"))
    if session.kind == "jacobian":
        assert "can recolour but not delete" in panel.status and session.edit_kind == "recolor"
    else:
        assert session.edit_kind == "delete" and "depth_edited" in _viewer_render(model, cam)
    panel.c06_folder.value = str(tmp_path / "edit")
    session.config_path = None
    panel._gui(panel._render_edit)
    assert panel.status.startswith("⚠ the run's config.yml is not found")


@pytest.mark.parametrize("panel", ["jnerf_pipeline"], indirect=True)
def test_render_edit_writes_an_edit_ns_render_replays(panel, jnerf_run, tmp_path):
    import yaml

    from jacobinerf_ns import query as q
    from jacobinerf_ns.render_options import load_edit

    session = panel.session
    session.config_path = jnerf_run.config_path
    _, y, x = _largest_object(session.pipeline)
    panel._arm("select")
    panel._on_click(_click(session.pipeline, 0, y, x))
    panel._gui(lambda: panel._edit("recolor"))
    panel.c06_folder.value = str(tmp_path / "edit")
    panel._gui(panel._render_edit)
    assert panel.status.startswith("Wrote"), panel.status
    edit = load_edit(tmp_path / "edit" / "edit.json")
    assert torch.allclose(edit.vector, session.query.vector) and edit.kind == "recolor" and edit.target == "jacobian"
    config = yaml.load((tmp_path / "edit" / "config_edit.yml").read_text(), Loader=yaml.Loader)
    assert Path(config.pipeline.model.edit_file) == (tmp_path / "edit" / "edit.json").resolve()
    cam = session.train_cameras[0:1]
    assert torch.allclose(q.render_edit(session.model, cam, edit)["rgb_edited"],
                          _viewer_render(session.model, cam)["rgb_edited"].cpu(), atol=1e-6)  # fmt: skip
    # ns-render replays it from config_edit.yml: test view 0 (frame 2) as the panel's edit renders it
    from nerfstudio.scripts.render import DatasetRender
    from PIL import Image

    DatasetRender(load_config=tmp_path / "edit" / "config_edit.yml", output_path=tmp_path / "r", split="test",
                  rendered_output_names=["rgb_edited"], image_format="png").main()  # fmt: skip
    first = next(p for p in (tmp_path / "r" / "test" / "rgb_edited").rglob("*.png") if p.stem.endswith("_2"))
    replayed = np.asarray(Image.open(first))[..., :3].astype(int)
    test_cam = session.pipeline.datamanager.eval_dataset.cameras[0:1]
    ours = q.render_edit(session.model, test_cam, edit)["rgb_edited"].clamp(0, 1).numpy()
    assert np.abs(replayed - (ours * 255).round().astype(int)).max() <= 1


# ------------------------------------------------------------------------------------- during ns-train --vis viewer
def test_a_click_during_viewer_training_neither_deadlocks_nor_reaches_a_step(room48, tmp_path):
    """``ns-train jacobinerf-tiny --vis viewer`` in this process (its viser server on a free port, no browser):
    while it trains, a click arrives through viser's pointer callback (nerfstudio's wrapper, as from a browser) and
    a slider moves through nerfstudio's locked GUI callback; training finishes, the click was served between steps,
    and no training step rendered a selection."""
    import socket

    from nerfstudio.viewer.viewer_elements import ScenePointerEvent
    from run_utils import method_config, setup_trainer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = method_config("jacobinerf-tiny", room48, tmp_path, steps=60, rays=256, timestamp="viewer")
    cfg.vis = "viewer"
    cfg.viewer.websocket_host, cfg.viewer.websocket_port = "127.0.0.1", port
    cfg.viewer.quit_on_train_completion = True
    cfg.pipeline.model.shaping_start_step = 0
    trainer = setup_trainer(cfg)
    model = trainer.pipeline.model
    panel = panel_of(model)
    assert panel.session is not None and panel.session.pipeline is trainer.pipeline  # set up by the viewer
    leaked, steps_at_click = [], {}
    original = model.get_outputs

    def recording(ray_bundle):
        out = original(ray_bundle)
        if model.training:
            leaked.extend(k for k in SELECTION_KEYS if k in out)
        return out

    model.get_outputs = recording
    cam = trainer.pipeline.datamanager.train_dataset.cameras[0:1]
    rays = cam.generate_rays(camera_indices=0, keep_shape=True)
    origin, direction = rays.origins[18, 24] * VISER_SCALE, rays.directions[18, 24]

    def click_while_training():
        while model.step < 10:
            time.sleep(0.01)
        panel.a01_select.cb_hook(panel.a01_select)  # the Select button, as nerfstudio wraps it (train lock)
        server = trainer.viewer_state.viser_server
        event = ScenePointerEvent(client=None, client_id=0, event_type="click",  # type: ignore[arg-type]
                                  ray_origin=tuple(origin.tolist()), ray_direction=tuple(direction.tolist()),
                                  screen_pos=((0.5, 0.5),))  # fmt: skip
        steps_at_click["before"] = model.step
        server.scene._scene_pointer_cb(event)
        steps_at_click["after"] = model.step
        panel.a02_threshold.value = 0.95  # a GUI callback: nerfstudio takes the train lock around it

    faulthandler.dump_traceback_later(300, exit=True)  # a deadlock fails the run instead of hanging it
    try:
        clicker = threading.Thread(target=click_while_training, daemon=True)
        clicker.start()
        trainer.train()
        clicker.join(120)
    finally:
        faulthandler.cancel_dump_traceback_later()
        trainer.viewer_state.viser_server.stop()
    assert not clicker.is_alive()
    assert panel.status.startswith("Selected by resonance"), panel.status
    assert steps_at_click["before"] < cfg.max_num_iterations - 1, steps_at_click  # it happened during training
    assert leaked == []
    assert model.viewer_options is not None and model.viewer_options.selection is not None
    assert trainer.step == cfg.max_num_iterations - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    deadline = time.monotonic() + 10  # the slider's callback runs in viser's thread pool
    while panel.session.threshold != pytest.approx(0.95) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert panel.session.threshold == pytest.approx(0.95)
