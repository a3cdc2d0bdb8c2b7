"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``; this folder is on sys.path)."""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def ensure_scene(path: Path | None) -> Path:
    """``path`` when it holds a scene, else the default ``jn-synth`` scene generated into a temporary folder."""
    if path is not None and (path / "traj_w_c.txt").is_file():
        return path
    from jacobinerf_ns.data.synth import SynthConfig, generate_scene

    return generate_scene(SynthConfig(output_dir=Path(tempfile.mkdtemp()) / "room", quiet=True, export_mesh=False))


@contextlib.contextmanager
def no_lpips():
    """nerfacto builds LPIPS at construction, which downloads AlexNet; training never uses it."""
    import torchmetrics.image.lpip as lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity
    lpip.LearnedPerceptualImagePatchSimilarity = lambda *a, **k: torch.nn.Identity()  # type: ignore[misc]
    try:
        yield
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original


def use_synthetic_teacher(datamanager_config) -> None:
    """Benchmarks run offline on ground-truth scenes: a datamanager with a teacher gets the synthetic one (kept if
    it already is, with its options), quietly."""
    if hasattr(datamanager_config, "teacher"):
        from jacobinerf_ns.teachers import SyntheticTeacherConfig

        if not isinstance(datamanager_config.teacher, SyntheticTeacherConfig):
            datamanager_config.teacher = SyntheticTeacherConfig()
        datamanager_config.teacher.show_progress = False


def method_pipeline_config(method: str, scene: Path, rays: int | None = None):
    """A deep copy of a registered method's pipeline config pointed at ``scene`` (synthetic teacher if any)."""
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods[method].pipeline)
    cfg.datamanager.data = scene
    if rays is not None:
        cfg.datamanager.train_num_rays_per_batch = rays
    use_synthetic_teacher(cfg.datamanager)
    return cfg


def build(pipeline_config, lr: float = 1e-2, device: str = "cpu"):
    """(pipeline, Adam over all parameter groups, the model's training callbacks) on ``device``."""
    with no_lpips():
        pipeline = pipeline_config.setup(device=device, test_mode="val")
    groups = pipeline.get_param_groups()
    opt = torch.optim.Adam([p for ps in groups.values() for p in ps], lr=lr, eps=1e-15)
    callbacks = pipeline.model.get_training_callbacks(None)  # type: ignore[arg-type]
    return pipeline, opt, callbacks


def train_step(pipeline, opt, callbacks, ray_bundle, batch, step: int) -> float:
    """One optimisation step as nerfstudio's trainer does it (callbacks, forward, losses, backward, Adam); seconds."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    synchronize = torch.cuda.synchronize if pipeline.device.type == "cuda" else (lambda: None)
    synchronize()
    start = time.perf_counter()
    for cb in callbacks:
        if TrainingCallbackLocation.BEFORE_TRAIN_ITERATION in cb.where_to_run:
            cb.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    opt.zero_grad(set_to_none=True)
    outputs = pipeline.model(ray_bundle)
    metrics = pipeline.model.get_metrics_dict(outputs, batch)
    loss = sum(pipeline.model.get_loss_dict(outputs, batch, metrics).values())
    loss.backward()
    opt.step()
    for cb in callbacks:
        if TrainingCallbackLocation.AFTER_TRAIN_ITERATION in cb.where_to_run:
            cb.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    synchronize()  # CUDA kernels are asynchronous: time the work, not its launch
    return time.perf_counter() - start


def time_interleaved(built: dict, datamanager, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per :func:`train_step` of each ``built[name] = (pipeline, opt, callbacks)``, fed the same
    pre-sampled batches and alternating model by model every step (machine noise hits all alike)."""
    import statistics

    batches = [datamanager.next_train(i) for i in range(steps + warmup)]
    times: dict[str, list[float]] = {name: [] for name in built}
    for i, (ray_bundle, batch) in enumerate(batches):
        for name, (pipeline, opt, callbacks) in built.items():
            dt = train_step(pipeline, opt, callbacks, copy.deepcopy(ray_bundle), batch, i)
            if i >= warmup:
                times[name].append(dt)
    return {name: statistics.median(ts) for name, ts in times.items()}


def teacher_nn_labeller(pipeline, test_features, pixels, labels):
    """Teacher-2D nearest neighbour: annotated pixels' teacher features (labelled training view) vs test views'."""
    from jacobinerf_ns.propagator import NearestNeighbourLabeller

    keys = pipeline.datamanager.teacher_features.dense(0)[pixels[:, 0], pixels[:, 1]]
    return NearestNeighbourLabeller(keys, labels, lambda i: test_features.dense(i))


def feature_field_labeller(model, view: int, train_cameras, targets, pixels, labels):
    """Feature-field nearest neighbour: rendered features at the annotated pixels vs rendered target views."""
    from jacobinerf_ns.evaluation import render_pixels
    from jacobinerf_ns.propagator import NearestNeighbourLabeller, render_view

    idx = torch.cat([torch.full((len(pixels), 1), view), pixels], dim=1)
    keys = render_pixels(model, train_cameras, idx, ["features"])["features"]
    return NearestNeighbourLabeller(keys, labels, lambda i: render_view(model, targets.camera(i))["features"])


def train_method(method: str, scene: Path, out: Path, name: str, **model_overrides) -> Path:
    """Train a registered method through nerfstudio's trainer (as ``ns-train`` would; synthetic teacher if any);
    extra keyword arguments override model settings, ``dm_<field>`` ones datamanager settings. Returns config.yml."""
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods[method])
    cfg.data = scene
    cfg.pipeline.datamanager.data = scene
    cfg.output_dir = out
    cfg.experiment_name = out.name
    cfg.timestamp = name
    cfg.vis = "tensorboard"
    use_synthetic_teacher(cfg.pipeline.datamanager)
    for key, value in model_overrides.items():
        if key.startswith("dm_"):
            setattr(cfg.pipeline.datamanager, key[3:], value)
        elif key == "max_num_iterations":
            cfg.max_num_iterations = value
        else:
            setattr(cfg.pipeline.model, key, value)
    cfg.save_config()
    # nerfstudio's writers are module globals that only ever grow: without this, every earlier run's tensorboard
    # file of this process would also receive this run's scalars
    from nerfstudio.utils import writer

    for previous in writer.EVENT_WRITERS:
        if hasattr(previous, "tb_writer"):
            previous.tb_writer.close()
    writer.EVENT_WRITERS.clear()
    writer.EVENT_STORAGE.clear()
    torch.manual_seed(cfg.machine.seed)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return cfg.get_base_dir() / "config.yml"


def load_run(config_path: Path):
    """nerfstudio's ``eval_setup`` on the test split (latest checkpoint); returns the pipeline."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    return pipeline


def teacher_targets(pipeline):
    """Teacher features of the test views (the teacher is 2D: it sees the test images)."""
    dm = pipeline.datamanager
    return dm.eval_teacher_features()


def protocol(pipeline, target: str, setting: str, seed: int):
    """The official protocol on a loaded run: training view 0 is labelled (one seeded click per label present for
    ``sparse``, the whole view for ``dense``) and every test view is a target. Returns (annotation, targets)."""
    from jacobinerf_ns.annotations import make_annotation
    from jacobinerf_ns.propagator import ViewSet
    from jacobinerf_ns.scripts.propagate import _label_names

    dm = pipeline.datamanager
    source = "semantics" if target == "semantic" else "instance"
    targets = ViewSet(dm.eval_dataset.cameras, getattr(dm.eval_scene, source).cpu())
    names = _label_names(pipeline, dm.train_scene, target)
    ann = make_annotation(getattr(dm.train_scene, source)[0].cpu(), target, setting, 0, seed, names)
    return ann, targets


def subsample(ann, limit: int, seed: int):
    """At most ``limit`` annotated pixels (dense setting) for nearest-neighbour look-ups; seeded."""
    if len(ann.pixels) <= limit:
        return ann.pixels, ann.labels
    pick = torch.randperm(len(ann.pixels), generator=torch.Generator().manual_seed(seed))[:limit]
    return ann.pixels[pick], ann.labels[pick]
