"""Writing a generated scene in Semantic-NeRF's Replica layout (atomically).

Layout of ``output_dir``::

    rgb/rgb_{i}.png                              uint8 RGB
    depth/depth_{i}.png                          uint16 z-depth in mm, clipped to [100, 10000]; 0 = no hit
    semantic_class/semantic_class_{i}.png        uint8 raw class ids, 0 = void
    semantic_instance/semantic_instance_{i}.png  uint16 instance ids, 0 = void
    traj_w_c.txt                                 one row-major 4x4 camera-to-world (OpenCV axes) per line
    info_semantic.json                           classes / objects / id_to_label, like Replica's habitat file
    scene_meta.json                              intrinsics, depth scale, axes, lights, room, objects, settings
    mesh/mesh_semantic.ply                       (optional) the scene mesh, faces with object_id and class_id

Everything is written into a hidden sibling directory which is renamed into place at the end, so an interrupted
run never leaves a half-written scene behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from jaxtyping import Float
from PIL import Image

from jacobinerf_ns.data.synth.classes import CLASSES, VOID_ID
from jacobinerf_ns.data.synth.config import GENERATOR_NAME, GENERATOR_VERSION, SynthConfig
from jacobinerf_ns.data.synth.render import Intrinsics, RenderedView, Renderer
from jacobinerf_ns.data.synth.scene import Scene, SceneObject, build_scene
from jacobinerf_ns.data.synth.trajectory import camera_poses
from jacobinerf_ns.errors import ConfigError, JacobiNeRFError

SUBDIRS = ("rgb", "depth", "semantic_class", "semantic_instance")
DEPTH_SCALE = 1000.0
_CONTENT_KEYS = (
    "seed", "num_views", "width", "height", "supersample", "room_length_range", "room_width_range",
    "room_height_range", "camera_height_range", "min_clearance", "look_swing_deg", "pitch_deg", "num_clutter",
    "lamp_light", "ambient", "light_intensity", "exposure",
)  # fmt: skip
"""Settings that change the generated content (recorded in scene_meta.json; paths and verbosity are not)."""


class OutputExistsError(JacobiNeRFError, FileExistsError):
    """The output directory exists and is not empty (and overwrite was not asked for)."""


# -------------------------------------------------------------------------------------------------- checks
def check_config(cfg: SynthConfig) -> None:
    """Reject settings that cannot produce a valid scene (one clear message)."""
    if cfg.num_views < 1:
        raise ConfigError(f"num_views must be >= 1, got {cfg.num_views}")
    if cfg.width < 2 or cfg.height < 2:
        raise ConfigError(f"image size must be at least 2x2, got {cfg.width}x{cfg.height}")
    if cfg.supersample < 1:
        raise ConfigError(f"supersample must be >= 1, got {cfg.supersample}")
    lo, hi = cfg.camera_height_range
    if not 0.3 < lo <= hi:
        raise ConfigError(f"camera_height_range must satisfy 0.3 < low <= high, got {cfg.camera_height_range}")


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``path`` is a file, or a non-empty directory without ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output path exists and is not a directory: {path}")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(f"output directory is not empty: {path} (pass --overwrite to replace it)")


def _staging_dir(path: Path) -> Path:
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for sub in SUBDIRS:
        (tmp / sub).mkdir()
    return tmp


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished staging directory into place."""
    check_output_dir(path, overwrite)
    old = None
    if path.is_dir() and any(path.iterdir()):
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
    elif path.is_dir():
        path.rmdir()
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- files
def write_view(root: Path, index: int, view: RenderedView) -> None:
    """The four images of frame ``index``."""
    Image.fromarray(view.rgb).save(root / "rgb" / f"rgb_{index}.png")
    Image.fromarray(view.depth_mm).save(root / "depth" / f"depth_{index}.png")
    Image.fromarray(view.semantic_class).save(root / "semantic_class" / f"semantic_class_{index}.png")
    Image.fromarray(view.semantic_instance).save(root / "semantic_instance" / f"semantic_instance_{index}.png")


def write_trajectory(path: Path, poses: Float[np.ndarray, "n 4 4"]) -> None:
    """One row-major 4x4 camera-to-world matrix per line."""
    lines = [" ".join(f"{v:.12e}" for v in pose.reshape(16)) for pose in poses]
    path.write_text("\n".join(lines) + "\n")


def info_semantic(scene: Scene) -> dict:
    """Replica-style ``info_semantic.json`` content."""
    classes = [{"id": c.id, "name": c.name, "color": list(c.color)} for c in CLASSES if c.id != VOID_ID]
    objects, id_to_label = [], [-1] * (scene.num_instances + 1)
    id_to_label[0] = VOID_ID
    for o in scene.objects:
        if o.instance_id == 0:
            continue
        objects.append({"id": o.instance_id, "class_id": o.class_id, "class_name": o.class_name, "label": o.label})
        id_to_label[o.instance_id] = o.class_id
    return {"classes": classes, "objects": objects, "id_to_label": id_to_label}


def scene_meta(cfg: SynthConfig, scene: Scene) -> dict:
    """Everything a reader may want besides the images (no paths, so it is identical for identical content)."""
    k = Intrinsics(cfg.width, cfg.height)
    settings = {key: v for key, v in asdict(cfg).items() if key in _CONTENT_KEYS}
    return {
        "generator": GENERATOR_NAME,
        "version": GENERATOR_VERSION,
        "seed": cfg.seed,
        "num_views": cfg.num_views,
        "width": cfg.width,
        "height": cfg.height,
        "fx": k.fx,
        "fy": k.fy,
        "cx": k.cx,
        "cy": k.cy,
        "hfov_deg": 90.0,
        "depth_scale": DEPTH_SCALE,
        "depth_type": "z (distance along the optical axis)",
        "depth_range_m": [0.1, 10.0],
        "camera_convention": "opencv (x right, y down, z forward), traj_w_c.txt rows are camera-to-world",
        "world_up": "+z",
        "units": "metres",
        "void_class_id": VOID_ID,
        "room_size": [round(v, 6) for v in scene.room_size],
        "room_bounds": [[-scene.room_size[0] / 2, -scene.room_size[1] / 2, 0.0],
                        [scene.room_size[0] / 2, scene.room_size[1] / 2, scene.room_size[2]]],
        "lights": [
            {"name": li.name, "position": [round(v, 6) for v in li.position], "color": list(li.color),
             "intensity": li.intensity, "owner_instance": li.owner}
            for li in scene.lights
        ],
        "num_instances": scene.num_instances,
        "num_faces": int(len(scene.faces)),
        "objects": [_object_meta(o) for o in scene.objects],
        "settings": settings,
    }  # fmt: skip


OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def nerfstudio_transforms(cfg: SynthConfig, poses: Float[np.ndarray, "n 4 4"]) -> dict:
    """nerfstudio's ``transforms.json`` for the same frames, so every generated scene is also a nerfstudio capture
    (``ns-train ... nerfstudio-data --data DIR``): OpenGL camera-to-world matrices, pinhole intrinsics in
    nerfstudio's pixel convention (pixel centres at +0.5, so ``cx = W/2``), and the millimetre depth PNGs (read with
    nerfstudio-data's default ``depth_unit_scale_factor`` 1e-3). Labels are not part of nerfstudio's format."""
    k = Intrinsics(cfg.width, cfg.height)
    frames = [
        {
            "file_path": f"rgb/rgb_{i}.png",
            "depth_file_path": f"depth/depth_{i}.png",
            "transform_matrix": np.round(pose @ OPENCV_TO_OPENGL, 12).tolist(),
        }
        for i, pose in enumerate(poses)
    ]
    return {
        "camera_model": "OPENCV",
        "fl_x": k.fx,
        "fl_y": k.fy,
        "cx": k.cx + 0.5,
        "cy": k.cy + 0.5,
        "w": cfg.width,
        "h": cfg.height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "frames": frames,
    }


def _object_meta(o: SceneObject) -> dict:
    return {
        "instance_id": o.instance_id,
        "class_id": o.class_id,
        "class_name": o.class_name,
        "label": o.label,
        "materials": sorted({p.material.name for p in o.parts}),
        "bounds": np.round(o.bounds, 5).tolist(),
    }


def write_mesh_ply(path: Path, scene: Scene) -> None:
    """Binary PLY of the scene; faces carry ``object_id`` (instance) and ``class_id`` like Replica's semantic mesh."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nv, nf = len(scene.vertices), len(scene.faces)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment jn-synth scene mesh (metres, z up)\n"
        f"element vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {nf}\nproperty list uchar int vertex_indices\nproperty int object_id\n"
        "property int class_id\nend_header\n"
    )
    face_dtype = np.dtype([("n", "u1"), ("idx", "<i4", (3,)), ("obj", "<i4"), ("cls", "<i4")])
    faces = np.empty(nf, dtype=face_dtype)
    faces["n"] = 3
    faces["idx"] = scene.faces
    faces["obj"] = scene.face_instance
    faces["cls"] = scene.face_class
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(scene.vertices.astype("<f4").tobytes())
        f.write(faces.tobytes())


def _json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------- main
def generate_scene(config: SynthConfig) -> Path:
    """Generate the scene described by ``config`` into ``config.output_dir``; returns that directory.

    Raises :class:`OutputExistsError` (before any work) if the directory is not empty and ``overwrite`` is off.
    """
    check_config(config)
    out = Path(config.output_dir)
    check_output_dir(out, config.overwrite)
    t0 = time.perf_counter()
    scene = build_scene(config)
    poses = camera_poses(scene, config)
    renderer = Renderer(scene, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _staging_dir(out)
    try:
        for start in range(0, len(poses), max(1, config.batch_views)):
            views = renderer.render(poses[start : start + max(1, config.batch_views)])
            for i, view in enumerate(views):
                write_view(tmp, start + i, view)
            _progress(config, start + len(views), time.perf_counter() - t0)
        write_trajectory(tmp / "traj_w_c.txt", poses)
        _json(tmp / "info_semantic.json", info_semantic(scene))
        _json(tmp / "scene_meta.json", scene_meta(config, scene))
        _json(tmp / "transforms.json", nerfstudio_transforms(config, poses))
        if config.export_mesh:
            write_mesh_ply(tmp / "mesh" / "mesh_semantic.ply", scene)
        _commit(tmp, out, config.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _progress(cfg: SynthConfig, done: int, elapsed: float) -> None:
    if not cfg.quiet:
        print(f"\r{GENERATOR_NAME}: {done}/{cfg.num_views} views ({elapsed:.1f} s)", end="", file=sys.stderr)
        if done == cfg.num_views:
            print(file=sys.stderr)
