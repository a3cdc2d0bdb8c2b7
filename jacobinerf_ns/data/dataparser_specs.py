"""Dataparser entry points (``nerfstudio.dataparser_configs``).

Kept in a module of its own that imports only the dataparsers: nerfstudio loads these while its method configs are
half-imported, so importing models or datamanagers here would be a circular import (ENVIRONMENT.md #6).
"""

from __future__ import annotations

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from jacobinerf_ns.data.replica_dataparser import ReplicaSemanticDataParserConfig
from jacobinerf_ns.data.scannet_dataparser import ScanNetSemanticDataParserConfig

replica_semantic = DataParserSpecification(
    config=ReplicaSemanticDataParserConfig(),
    description="Semantic-NeRF's Replica renders and jn-synth scenes (rgb/, depth/, semantic_class/, traj_w_c.txt)",
)

scannet_semantic = DataParserSpecification(
    config=ScanNetSemanticDataParserConfig(),
    description="ScanNet exports with labels (color/, depth/, pose/, intrinsic/, label-filt/, instance-filt/)",
)
