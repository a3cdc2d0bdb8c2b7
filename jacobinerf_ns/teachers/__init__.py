"""2D teachers (DINO through timm, an appearance one from pixels alone, a synthetic one from ground truth) and their
content-keyed feature cache.

Use :func:`compute_teacher_features` once at start-up, then :meth:`TeacherFeatures.lookup` per ray batch. Importing
this package does not import timm (only building a DINO network does).
"""

from __future__ import annotations

from jacobinerf_ns.teachers.appearance import AppearanceTeacher, AppearanceTeacherConfig
from jacobinerf_ns.teachers.auto import AutoTeacherConfig
from jacobinerf_ns.teachers.base import (
    GroundTruth,
    Teacher,
    TeacherConfig,
    TeacherError,
    TeacherFeatures,
    TeacherInputs,
    TeacherWeightsError,
    file_identity,
    patch_grid_hw,
)
from jacobinerf_ns.teachers.cache import (
    CACHE_FORMAT_VERSION,
    TeacherCacheWarning,
    cache_key,
    cache_path,
    compute_teacher_features,
)
from jacobinerf_ns.teachers.clip import ClipTeacher, ClipTeacherConfig
from jacobinerf_ns.teachers.dino import DINO_MODELS, DinoTeacher, DinoTeacherConfig
from jacobinerf_ns.teachers.lseg import LSEG_BACKBONES, LSegTeacher, LSegTeacherConfig
from jacobinerf_ns.teachers.pca import PCABasis, fit_pca
from jacobinerf_ns.teachers.synthetic import SyntheticTeacher, SyntheticTeacherConfig
from jacobinerf_ns.teachers.text import ClipTextEncoder

__all__ = [
    "AppearanceTeacher",
    "AppearanceTeacherConfig",
    "AutoTeacherConfig",
    "CACHE_FORMAT_VERSION",
    "ClipTeacher",
    "ClipTeacherConfig",
    "ClipTextEncoder",
    "DINO_MODELS",
    "DinoTeacher",
    "DinoTeacherConfig",
    "GroundTruth",
    "LSEG_BACKBONES",
    "LSegTeacher",
    "LSegTeacherConfig",
    "PCABasis",
    "SyntheticTeacher",
    "SyntheticTeacherConfig",
    "Teacher",
    "TeacherCacheWarning",
    "TeacherConfig",
    "TeacherError",
    "TeacherFeatures",
    "TeacherInputs",
    "TeacherWeightsError",
    "cache_key",
    "cache_path",
    "compute_teacher_features",
    "file_identity",
    "fit_pca",
    "patch_grid_hw",
]
