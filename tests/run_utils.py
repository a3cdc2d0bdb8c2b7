"""Training runs for the tests: registered method configs made small, trained through nerfstudio's own Trainer.

:func:`train` is what ``ns-train`` does (config → ``Trainer.setup`` → ``Trainer.train``), in-process (nerfstudio's
import costs ~8 s per process). With ``record=True`` it also keeps, per training step, the model's own idea of the
step and the names of the losses the trainer optimised, and the test-view metrics of the untrained model, so tests
can check what happened inside the real loop without calling any loss by hand.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch


def method_config(name: str, data: Path, out: Path, steps: int, rays: int = 256, timestamp: str | None = None):
    """A registered method's TrainerConfig for a short CPU run on ``data`` (what ``ns-train NAME --data`` builds)."""
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods[name])
    cfg.data = data
    cfg.pipeline.datamanager.data = data  # what ns-train does with --data
    cfg.output_dir = out
    cfg.experiment_name = "test"
    cfg.timestamp = timestamp or name
    cfg.max_num_iterations = steps
    cfg.steps_per_save = steps
    cfg.steps_per_eval_batch = steps
    cfg.steps_per_eval_image = 10**9
    cfg.vis = "tensorboard"
    cfg.machine.device_type = "cpu"
    cfg.pipeline.datamanager.train_num_rays_per_batch = rays
    cfg.pipeline.datamanager.eval_num_rays_per_batch = rays
    cfg.pipeline.model.eval_num_rays_per_chunk = 2048
    if hasattr(cfg.pipeline.datamanager, "teacher"):  # no DINO weights offline: the synthetic teacher stands in
        from jacobinerf_ns.teachers import SyntheticTeacherConfig

        cfg.pipeline.datamanager.teacher = SyntheticTeacherConfig(show_progress=False)
        cfg.pipeline.datamanager.shaping_rays_per_batch = min(cfg.pipeline.datamanager.shaping_rays_per_batch, 128)
    return cfg


@dataclass
class TrainedRun:
    """A finished run and what the recorder saw while it trained."""

    config_path: Path
    """The run's ``config.yml`` (what ``ns-eval --load-config`` takes)."""
    initial_metrics: dict[str, float] = field(default_factory=dict)
    """Test-view metrics of the model before its first step (same evaluation as ``ns-eval``)."""
    loss_names: dict[int, set[str]] = field(default_factory=dict)
    """Trainer step → names of the losses returned by the model in that step."""
    model_steps: dict[int, int] = field(default_factory=dict)
    """Trainer step → the step the model believed it was at (set by its training callback)."""
    final_tau_pos: float | None = None
    """The datamanager's τ_pos after the last step (teacher datamanagers only)."""

    @property
    def run_dir(self) -> Path:
        return self.config_path.parent


def _clear_writers() -> None:
    """nerfstudio's event writers are module globals that only grow: close and drop those of earlier runs."""
    from nerfstudio.utils import writer

    for previous in writer.EVENT_WRITERS:
        if hasattr(previous, "tb_writer"):
            previous.tb_writer.close()
    writer.EVENT_WRITERS.clear()
    writer.EVENT_STORAGE.clear()


def setup_trainer(cfg):
    """``Trainer.setup`` as ``ns-train`` runs it (the config is saved first, as ``ns-train`` does)."""
    _clear_writers()
    cfg.set_timestamp()
    cfg.save_config()
    torch.manual_seed(cfg.machine.seed)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def train(cfg, record: bool = False) -> TrainedRun | Path:
    """Train through nerfstudio's Trainer; return the config path, or a :class:`TrainedRun` with ``record``."""
    trainer = setup_trainer(cfg)
    run = TrainedRun(config_path=cfg.get_base_dir() / "config.yml")
    if record:
        pipeline = trainer.pipeline
        run.initial_metrics = pipeline.get_average_eval_image_metrics()
        pipeline.train()
        model = pipeline.model
        original = model.get_loss_dict
        counter = {"step": trainer._start_step}

        def recording_loss_dict(outputs, batch, metrics_dict=None):
            losses = original(outputs, batch, metrics_dict)
            step = counter["step"]
            run.loss_names[step] = set(losses)
            run.model_steps[step] = int(getattr(model, "step", -1))
            counter["step"] += 1
            return losses

        model.get_loss_dict = recording_loss_dict  # the trainer calls it once per step, eval batches excluded below
        original_eval = pipeline.get_eval_loss_dict

        def eval_loss_dict(step):  # evaluation batches go through get_loss_dict too: do not count them
            model.get_loss_dict = original
            try:
                return original_eval(step)
            finally:
                model.get_loss_dict = recording_loss_dict

        pipeline.get_eval_loss_dict = eval_loss_dict
    trainer.train()
    if hasattr(trainer.pipeline.datamanager, "tau_pos"):
        run.final_tau_pos = trainer.pipeline.datamanager.tau_pos
    return run if record else run.config_path


def load_pipeline(config_path: Path, test_mode: str = "test"):
    """nerfstudio's ``eval_setup`` (latest checkpoint) as ``ns-eval`` / ``jn-propagate`` load a run."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode=test_mode)
    return pipeline


@contextlib.contextmanager
def serve_viewer(config_path: Path, log_path: Path, timeout_s: float = 240.0, extra: tuple[str, ...] = ()):
    """Run the real ``ns-viewer --load-config`` on a free localhost port until its web client answers HTTP 200;
    yield the URL; stop it afterwards. A viewer that exits or never serves fails the test with its log's tail."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    import pytest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        str(Path(sys.executable).parent / "ns-viewer"), "--load-config", str(config_path),
        "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port), *extra,
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ns-viewer exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"ns-viewer did not serve {url} in {timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
