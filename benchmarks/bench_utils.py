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

from jacobinerf_ns.eval.protocol import (  # noqa: E402, F401  (re-exported for the benchmark scripts)
    feature_field_labeller,
    protocol,
    subsample,
    teacher_nn_labeller,
)


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


def set_teacher(datamanager_config, teacher: str = "synthetic") -> None:
    """Benchmarks run offline: a datamanager with a teacher gets the ``synthetic`` one (computed from ground truth,
    kept with its options if already set) or the ``appearance`` one (pixels only), quietly."""
    if not hasattr(datamanager_config, "teacher"):
        return
    from jacobinerf_ns.teachers import AppearanceTeacherConfig, SyntheticTeacherConfig

    kind = {"synthetic": SyntheticTeacherConfig, "appearance": AppearanceTeacherConfig}[teacher]
    if not isinstance(datamanager_config.teacher, kind):
        datamanager_config.teacher = kind()
    datamanager_config.teacher.show_progress = False


def method_pipeline_config(method: str, scene: Path, rays: int | None = None, teacher: str = "synthetic"):
    """A deep copy of a registered method's pipeline config pointed at ``scene`` (with the benchmark's teacher)."""
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods[method].pipeline)
    cfg.datamanager.data = scene
    if rays is not None:
        cfg.datamanager.train_num_rays_per_batch = rays
    set_teacher(cfg.datamanager, teacher)
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


def train_method(method: str, scene: Path, out: Path, name: str, teacher: str = "synthetic", **model_overrides) -> Path:
    """Train a registered method through nerfstudio's trainer (as ``ns-train`` would; the benchmark's teacher if it
    has one); extra keyword arguments override model settings, ``dm_<field>`` ones datamanager settings. Returns
    config.yml."""
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods[method])
    cfg.data = scene
    cfg.pipeline.datamanager.data = scene
    cfg.output_dir = out
    cfg.experiment_name = out.name
    cfg.timestamp = name
    cfg.vis = "tensorboard"
    set_teacher(cfg.pipeline.datamanager, teacher)
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
