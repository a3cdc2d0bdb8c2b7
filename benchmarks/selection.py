"""Click selection on the default ``jn-synth`` scene: quality against ground-truth masks and click latency.

Runs (trained here through nerfstudio's trainer unless given): ``jacobinerf-tiny`` (shaped), the same with shaping
off (the paper's "plain NeRF lacks semantic awareness" control) and ``jacobinerf-features-tiny`` (feature field).
The teacher is ``--teacher`` (``appearance``: pixels only, or ``synthetic``: computed from ground truth) for the runs
trained here; reused runs keep theirs. Every line names the teacher of its run.

Every click goes through the viewer panel's own path (:class:`jacobinerf_ns.viewer.session.ClickSession`): the
click ray of a pixel is rendered as a 1×1 camera (hit, depth, query), then the view is rendered with the selection
as the viewer renders it. Methods: ``jnerf-resonance`` (|cos(J̃_q, G)|, the panel's default score),
``jnerf-response`` (first-order response over the clicked pixel's own, from the same render's Jacobians),
``plain-resonance`` / ``plain-response`` (the unshaped run), ``feature-similarity`` (cosine of rendered features).

Protocol: seeded clicks, uniform over (view, instance) pairs with at least ``--min-pixels`` pixels, then a uniform
pixel of that instance. Each method's threshold is calibrated on clicks in the **training** views (the threshold of
the best mean instance IoU on a grid; the class threshold likewise for class IoU) and then scored on clicks in the
**test** views: per click the IoU of the selection mask with the clicked pixel's instance mask and with its class
mask ("select all of this class"), averaged over clicks. ``click_to_mask_s`` is the time from the click to the mask
at the view's resolution (the ray render, the query and the view's selection render).

Latency (``click_latency`` lines): the panel's pointer work (click ray render + query) plus one render of the
selection at the viewer's resolution (``--viewer-res``, 128 px on the long side: the CPU presets' viewer start), for
both model kinds, side by side with a plain RGB render at the same resolution (``ratio``).

Usage: ``python benchmarks/selection.py [--scene DIR] [--out bench_out/selection] [--jnerf CFG] [--plain CFG]
[--features CFG] [--clicks 60] [--quick]``. ``--quick`` trains small runs on a small scene (48x36, 300 steps) and
uses fewer clicks: it shows the script works, not a quality figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_utils import ensure_scene, load_run, train_method


def teacher_label(pipeline) -> str:
    """The teacher a run was trained with, as results print it (a synthetic one says so)."""
    meta = pipeline.datamanager.train_dataset.metadata
    name = str(meta.get("teacher_name", "none"))
    return f"{name} (computed from ground truth)" if meta.get("teacher_is_synthetic") else name


THRESHOLDS = np.round(np.concatenate([np.arange(0.3, 0.9, 0.05), np.arange(0.9, 0.995, 0.01)]), 3)


def sample_clicks(instance: torch.Tensor, count: int, min_pixels: int, seed: int) -> list[tuple[int, int, int]]:
    """(view, y, x) clicks: uniform over (view, instance) pairs with >= ``min_pixels`` pixels, then over pixels."""
    rng = np.random.default_rng(seed)
    inst = instance.cpu().numpy()
    pairs = []
    for v in range(len(inst)):
        ids, counts = np.unique(inst[v], return_counts=True)
        pairs += [(v, int(i)) for i, n in zip(ids, counts, strict=True) if i > 0 and n >= min_pixels]
    picks = rng.choice(len(pairs), size=min(count, len(pairs)), replace=False)
    clicks = []
    for p in picks:
        v, i = pairs[p]
        ys, xs = np.nonzero(inst[v] == i)
        k = rng.integers(len(ys))
        clicks.append((v, int(ys[k]), int(xs[k])))
    return clicks


def click_ray(camera, y: int, x: int):
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    return rays.origins[y, x], rays.directions[y, x]


def score_maps(pipeline, cameras, clicks) -> tuple[dict[str, list[np.ndarray]], list[float]]:
    """Per click: score maps (h, w) of each of the run's scores, and the seconds from the click to the mask."""
    from jacobinerf_ns import query as q
    from jacobinerf_ns.selection import resonance_score
    from jacobinerf_ns.viewer.session import ClickSession

    session = ClickSession(pipeline)
    maps: dict[str, list[np.ndarray]] = {}
    seconds = []
    for view, y, x in clicks:
        cam = cameras[view : view + 1]
        origin, direction = click_ray(cam, y, x)
        start = time.perf_counter()
        session.select(origin, direction)
        with session.model.rendering(session.options()):
            out = q.render(session.model, cam)
        mask = out["selection"]  # what the viewer shows at this threshold: the timed result
        seconds.append(time.perf_counter() - start)
        del mask
        if session.kind == "jacobian":
            maps.setdefault("resonance", []).append(out["selection_score"][..., 0].cpu().numpy())
            h, w, _ = out["jacobian"].shape
            jac = out["jacobian"].view(h, w, 3, -1).cpu()
            resp = resonance_score(jac, session.query.vector, "response", session.query.reference)
            maps.setdefault("response", []).append(resp.numpy())
        else:
            maps.setdefault("similarity", []).append(out["selection_score"][..., 0].cpu().numpy())
    return maps, seconds


def ious(maps: list[np.ndarray], truths: list[np.ndarray]) -> np.ndarray:
    """(clicks, thresholds) IoU of ``score >= t`` with each click's truth mask."""
    out = np.zeros((len(maps), len(THRESHOLDS)))
    for c, (score, truth) in enumerate(zip(maps, truths, strict=True)):
        for k, t in enumerate(THRESHOLDS):
            sel = score >= t
            out[c, k] = (sel & truth).sum() / max(1, (sel | truth).sum())
    return out


def truth_masks(scene, clicks) -> tuple[list[np.ndarray], list[np.ndarray]]:
    inst, sem = scene.instance.cpu().numpy(), scene.semantics.cpu().numpy()
    instance = [inst[v] == inst[v][y, x] for v, y, x in clicks]
    semantic = [(sem[v] == sem[v][y, x]) & (sem[v] >= 0) for v, y, x in clicks]
    return instance, semantic


@torch.no_grad()
def latency(pipeline, kind: str, clicks, viewer_res: int, repeats: int) -> dict:
    """Median seconds: the pointer callback's work, the selection render at the viewer's resolution, a plain render."""
    from jacobinerf_ns import query as q
    from jacobinerf_ns.viewer.session import ClickSession

    session = ClickSession(pipeline)
    cams = pipeline.datamanager.eval_dataset.cameras
    pick, shown, plain = [], [], []
    for view, y, x in clicks[:repeats]:
        cam = cams[view : view + 1]
        origin, direction = click_ray(cam, y, x)
        big = cams[view : view + 1]
        big.rescale_output_resolution(viewer_res / max(int(cam.width), int(cam.height)))
        start = time.perf_counter()
        session.select(origin, direction)
        clicked = time.perf_counter()
        with session.model.rendering(session.options()):
            q.render(session.model, big)
        shown.append(time.perf_counter() - clicked)
        pick.append(clicked - start)
        start = time.perf_counter()
        q.render(session.model, big)
        plain.append(time.perf_counter() - start)
    h, w = int(big.height), int(big.width)
    click_s, render_s, plain_s = (statistics.median(v) for v in (pick, shown, plain))
    return {
        "metric": "click_latency",
        "model": kind,
        "resolution": f"{w}x{h}",
        "click_s": round(click_s, 4),
        "selection_render_s": round(render_s, 4),
        "click_to_shown_s": round(click_s + render_s, 4),
        "plain_render_s": round(plain_s, 4),
        "ratio": round((click_s + render_s) / plain_s, 3),
        "repeats": len(pick),
        "device": str(pipeline.device),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"))
    parser.add_argument("--out", type=Path, default=Path("bench_out/selection"))
    parser.add_argument("--jnerf", type=Path, default=None, help="config.yml of a jacobinerf-tiny run to reuse")
    parser.add_argument("--plain", type=Path, default=None, help="config.yml of a run with shaping off to reuse")
    parser.add_argument("--features", type=Path, default=None, help="config.yml of a feature-field run to reuse")
    parser.add_argument("--clicks", type=int, default=60, help="test-view clicks (and as many calibration clicks)")
    parser.add_argument("--min-pixels", type=int, default=40, help="smallest instance a click may target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--viewer-res", type=int, default=128)
    parser.add_argument("--latency-repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="small scene, 300-step runs, 20 clicks")
    parser.add_argument(
        "--teacher", choices=["appearance", "synthetic"], default="appearance", help="runs trained here"
    )
    args = parser.parse_args()

    from jacobinerf_ns.viewer.session import DEFAULT_THRESHOLD

    start_all = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    train_kw: dict = {"teacher": args.teacher}
    if args.quick:
        from jacobinerf_ns.data.synth import SynthConfig, generate_scene

        if not (args.scene / "traj_w_c.txt").is_file() or args.scene == Path("data/synth-room"):
            quick_scene = Path(tempfile.mkdtemp()) / "room"
            args.scene = generate_scene(SynthConfig(output_dir=quick_scene, num_views=40, width=48, height=36,
                                                    supersample=1, export_mesh=False, quiet=True))  # fmt: skip
        args.clicks, args.min_pixels = min(args.clicks, 20), min(args.min_pixels, 10)
        train_kw |= {"max_num_iterations": 300, "dm_train_num_rays_per_batch": 1024}
    scene = ensure_scene(args.scene)
    shaping = {"shaping_start_step": 100} if args.quick else {}
    runs = {
        "jnerf": args.jnerf or train_method("jacobinerf-tiny", scene, args.out, "jnerf", **train_kw, **shaping),
        "plain": args.plain
        or train_method(
            "jacobinerf-tiny",
            scene,
            args.out,
            "plain",
            nce_loss_weight=0.0,
            norm_loss_weight=0.0,
            **train_kw,
            **shaping,
        ),  # fmt: skip
        "features": args.features or train_method("jacobinerf-features-tiny", scene, args.out, "features", **train_kw),
    }
    pipes = {name: load_run(path) for name, path in runs.items()}
    dm = pipes["jnerf"].datamanager
    calib = sample_clicks(dm.train_scene.instance, args.clicks, args.min_pixels, args.seed)
    tests = sample_clicks(dm.eval_scene.instance, args.clicks, args.min_pixels, args.seed + 1)
    calib_inst, calib_sem = truth_masks(dm.train_scene, calib)
    test_inst, test_sem = truth_masks(dm.eval_scene, tests)
    lines: list[dict] = []

    def emit(line: dict) -> None:
        lines.append(line)
        print(json.dumps(line), flush=True)

    names = {("jnerf", "resonance"): "jnerf-resonance", ("jnerf", "response"): "jnerf-response",
             ("plain", "resonance"): "plain-resonance", ("plain", "response"): "plain-response",
             ("features", "similarity"): "feature-similarity"}  # fmt: skip
    for run, pipe in pipes.items():
        train_maps, _ = score_maps(pipe, pipe.datamanager.train_dataset.cameras, calib)
        test_maps, seconds = score_maps(pipe, pipe.datamanager.eval_dataset.cameras, tests)
        kind = "feature" if run == "features" else "jacobian"
        for score, maps in test_maps.items():
            k_inst = int(ious(train_maps[score], calib_inst).mean(0).argmax())
            k_sem = int(ious(train_maps[score], calib_sem).mean(0).argmax())
            inst, sem = ious(maps, test_inst), ious(maps, test_sem)
            k_default = int(np.abs(THRESHOLDS - DEFAULT_THRESHOLD[kind]).argmin())
            emit({
                "method": names[(run, score)],
                "instance_iou": round(float(inst[:, k_inst].mean()), 4),
                "class_iou": round(float(sem[:, k_sem].mean()), 4),
                "threshold": float(THRESHOLDS[k_inst]),
                "class_threshold": float(THRESHOLDS[k_sem]),
                "class_iou_at_instance_threshold": round(float(sem[:, k_inst].mean()), 4),
                "instance_iou_at_panel_default": round(float(inst[:, k_default].mean()), 4),
                "panel_default_threshold": DEFAULT_THRESHOLD[kind],
                "click_to_mask_s": round(statistics.median(seconds), 4),
                "clicks": len(tests),
                "calibration_clicks": len(calib),
                "resolution": f"{maps[0].shape[1]}x{maps[0].shape[0]}",
                "teacher": "none (shaping off)" if run == "plain" else teacher_label(pipe),
                "run": str(runs[run]),
            })  # fmt: skip
    for run, kind in (("jnerf", "jacobinerf"), ("features", "feature field")):
        emit(latency(pipes[run], kind, tests, args.viewer_res, args.latency_repeats))
    by = {r["method"]: r for r in lines if "method" in r}
    gap = by["jnerf-resonance"]["instance_iou"] - by["plain-resonance"]["instance_iou"]
    emit({
        "metric": "selection_summary",
        "jnerf_minus_plain_instance_iou": round(gap, 4),
        "goal_jnerf_at_least_plain_plus_0.15": bool(gap >= 0.15),
        "jnerf_minus_features_instance_iou": round(by["jnerf-resonance"]["instance_iou"]
                                                   - by["feature-similarity"]["instance_iou"], 4),
        "latency_goal_1s_met": all(r["click_to_shown_s"] <= 1.0 for r in lines if r.get("metric") == "click_latency"),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - start_all, 1),
    })  # fmt: skip
    header = "| method | instance IoU | class IoU | threshold (inst. / class) | click → mask (s) |"
    table = [header, "|---|---|---|---|---|"]
    for r in lines:
        if "method" in r:
            iou = f"{100 * r['instance_iou']:.1f} | {100 * r['class_iou']:.1f}"
            thr = f"{r['threshold']:.2f} / {r['class_threshold']:.2f}"
            table.append(f"| {r['method']} | {iou} | {thr} | {r['click_to_mask_s']:.3f} |")
    table += ["", "| model | viewer resolution | click → selection shown (s) | plain render (s) | ratio |",
              "|---|---|---|---|---|"]  # fmt: skip
    for r in lines:
        if r.get("metric") == "click_latency":
            table.append(f"| {r['model']} | {r['resolution']} | {r['click_to_shown_s']:.3f} | "
                         f"{r['plain_render_s']:.3f} | {r['ratio']:.2f} |")  # fmt: skip
    markdown = "\n".join(table)
    print(markdown)
    (args.out / "results.json").write_text(json.dumps({"lines": lines}, indent=1))
    (args.out / "table.md").write_text(markdown + "\n")


if __name__ == "__main__":
    main()
