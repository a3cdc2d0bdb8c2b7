"""Trainer configurations of ``jacobinerf-gen`` (GPU-sized, GSNeRF's settings scaled) and ``jacobinerf-gen-tiny``.

``jacobinerf-gen``: K = 8 source views from the 12 nearest, a 3-level cascade (48 / 32 / 8 planes at H/4, H/2, H),
96 uniform + 32 guided samples, 1024 rays per step, Adam 5e-4 with warm-up and cosine decay, 100k steps.

``jacobinerf-gen-tiny`` (CPU, two cores): K = 4 from the 8 nearest, a 2-level cascade (24 / 8 planes at H/4, H/2),
a smaller encoder, 2 + 2 attention layers of 2 heads (4 heads cost 1.6x per layer on a CPU), 12 uniform + 4 guided
samples, 512 rays per step, 2000 steps, meant for ``jn-synth-many``'s 64x48 scenes. Fine-tuning a loaded run
continues at half the peak learning rate. Both use the synthetic-scene depth range 0.5-8 m (Replica: pass
``--pipeline.model.near 0.1 --pipeline.model.far 6``).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig

from jacobinerf_ns.fields.backend import auto_device_type
from jacobinerf_ns.gen.datamanager import GenDataManagerConfig
from jacobinerf_ns.gen.encoder import EncoderConfig
from jacobinerf_ns.gen.model import GenModelConfig
from jacobinerf_ns.gen.pipeline import GenPipelineConfig
from jacobinerf_ns.gen.schedule import WarmupCosineSchedulerConfig
from jacobinerf_ns.trainer import SemanticTrainerConfig

GEN_STEPS = 100_000
GEN_TINY_STEPS = 2000


def tiny_model() -> GenModelConfig:
    """The CPU-sized model."""
    return GenModelConfig(
        num_source_views=4,
        train_view_pool=8,
        encoder=EncoderConfig(channels=(12, 24, 32, 48), fpn_channels=(16, 8, 8), semantic_hidden=32),
        cascade_planes=(24, 8),
        cascade_interval_ratios=(1.0, 0.5),
        cascade_groups=(4, 4),
        regularizer_width=8,
        volume_channels=8,
        attention_dim=32,
        attention_heads=2,
        attention_layers=2,
        semantic_layers=2,
        num_uniform_samples=12,
        num_guided_samples=4,
        reprojection_window=1,
        eval_num_rays_per_chunk=4096,
    )


def gen_trainer_config(method_name: str, tiny: bool) -> SemanticTrainerConfig:
    """The whole trainer configuration of one preset."""
    steps = GEN_TINY_STEPS if tiny else GEN_STEPS
    model = tiny_model() if tiny else GenModelConfig()
    datamanager = GenDataManagerConfig(
        train_num_rays_per_batch=512 if tiny else 1024, eval_num_rays_per_batch=512 if tiny else 1024
    )
    lr = 1e-3 if tiny else 5e-4
    return SemanticTrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=250 if tiny else 1000,
        steps_per_eval_image=steps if tiny else 5000,
        steps_per_eval_all_images=10**9,
        steps_per_save=500 if tiny else 5000,
        max_num_iterations=steps,
        mixed_precision=False,
        machine=MachineConfig(device_type=auto_device_type()),
        pipeline=GenPipelineConfig(datamanager=datamanager, model=model),
        optimizers={
            "gen": {
                "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-8),
                "scheduler": WarmupCosineSchedulerConfig(
                    warm_up_steps=100 if tiny else 1000, max_steps=steps, min_ratio=0.05, finetune_ratio=0.5
                ),
            }
        },
        viewer=ViewerConfig(num_rays_per_chunk=4096, quit_on_train_completion=tiny),
        viewer_max_res=96 if tiny else None,
        vis="tensorboard" if tiny else "viewer",
    )
