"""The generalizable depth-guided semantic family (GSNeRF, Chou, Liu, Wang, CVPR 2024), CPU-sized.

A model that predicts colour and semantics of a novel view of an *unseen* scene from K nearby source views: a 2D
encoder (per-view features and semantic logits), a plane-sweep cost volume per source view (group-wise correlation,
3D CNN, soft-argmin depth, coarse-to-fine cascade), the target depth by reprojecting the source depths (z-buffered,
densified, blurred), depth-guided sampling, and attention over the source views for density, colour blending weights
and — at the depth point only — semantics.

Modules (one idea each; the math kernels have slow loop references in :mod:`jacobinerf_ns.gen.reference`):

* :mod:`~jacobinerf_ns.gen.geometry` camera conventions, projection, back-projection
* :mod:`~jacobinerf_ns.gen.reprojection` target depth from source depths (Algorithm 1 of the seed, with a z-buffer)
* :mod:`~jacobinerf_ns.gen.cost_volume` plane-sweep warping, group-wise correlation, soft-argmin, plane hypotheses
* :mod:`~jacobinerf_ns.gen.sampler` uniform + depth-guided samples
* :mod:`~jacobinerf_ns.gen.attention` masked multi-head attention over views; feature sampling at projections
* :mod:`~jacobinerf_ns.gen.encoder` the 2D encoder (small U-Net from scratch, or a timm backbone by name)
* :mod:`~jacobinerf_ns.gen.mvs` the cascade cost-volume network
* :mod:`~jacobinerf_ns.gen.renderer` tokens, view attention, density / colour / semantic heads
* :mod:`~jacobinerf_ns.gen.views` source-view selection rules
* :mod:`~jacobinerf_ns.gen.bank` the source bank of a scene (images, depths, labels, poses)
* :mod:`~jacobinerf_ns.gen.dataparser`, :mod:`~jacobinerf_ns.gen.dataset`, :mod:`~jacobinerf_ns.gen.datamanager`
  multi-scene data (scene sets, shared class table, metric poses, one target view per step)
* :mod:`~jacobinerf_ns.gen.losses` cross-entropy, cascade depth, self-supervised photometric depth
* :mod:`~jacobinerf_ns.gen.model`, :mod:`~jacobinerf_ns.gen.pipeline` the nerfstudio model and pipeline
* :mod:`~jacobinerf_ns.gen.schedule`, :mod:`~jacobinerf_ns.gen.presets` learning-rate schedule, the two presets

This package file imports nothing heavy (dataparser entry points must stay import-light, ENVIRONMENT.md #7).
"""

from __future__ import annotations
