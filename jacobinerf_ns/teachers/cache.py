"""Content-keyed on-disk cache of teacher features, and :func:`compute_teacher_features`, the one entry point that
extracts every image through it.

Cache key (sha256, hex) over, in order:

1. a header, canonical JSON (sorted keys): the cache format version, the teacher's name, the config class and every
   config field that changes the features (``TeacherConfig.feature_identity``: not ``show_progress``, batch size or
   device; a checkpoint path is replaced by the sha256 of the file's bytes), the number of images and their size;
2. per image, in order: the sha256 of its identity (``TeacherInputs.identities``, else the image tensor's bytes);
3. per image, for teachers that read ground truth (the synthetic one): the sha256 of its semantics and instances.

One file per key: ``<cache_dir>/<teacher name>-<key[:16]>.pt``, a plain dict (tensors, strings, ints; read with
``weights_only=True``) holding the features, the PCA basis if any, and metadata including the full key. Files are
written atomically (temp file in the same directory, then ``os.replace``).

On load, a file is used only if its stored full key, format version, teacher name, stride, image size, shape and
dtype all match what the current images and config would produce. Otherwise it is *stale*: one
:class:`TeacherCacheWarning`, recompute, overwrite. An unreadable/truncated file, or one holding NaN/inf (which
extraction never writes, so it can only be corruption), is treated the same way: warning, recompute. A recomputed
result is validated again, so a teacher that itself yields NaN raises :class:`TeacherError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers.base import (
    Teacher,
    TeacherConfig,
    TeacherError,
    TeacherFeatures,
    TeacherInputs,
    check_patch_features,
    l2_normalize,
)
from jacobinerf_ns.teachers.pca import PCABasis, fit_pca, sample_rows

CACHE_FORMAT_VERSION = 1
"""Bump when the file layout or the meaning of cached features changes (old files then never match)."""


class TeacherCacheWarning(UserWarning):
    """A cache file was stale, unreadable or corrupt and is being recomputed."""


def content_key(header: dict[str, Any], inputs: TeacherInputs, include_ground_truth: bool) -> str:
    """sha256 (hex) over a canonical JSON ``header``, each image's identity and, when asked, its ground truth: the
    key of anything computed from a dataset's images (teacher features, masks)."""
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    for i in range(len(inputs)):
        digest.update(inputs.identity_digest(i))
    if include_ground_truth:
        for i in range(len(inputs)):
            digest.update(inputs.ground_truth_digest(i))
    return digest.hexdigest()


def pca_digest(basis: PCABasis) -> str:
    """sha256 of a PCA basis (its mean and components), for cache keys of features projected with it."""
    digest = hashlib.sha256()
    for t in (basis.mean, basis.components):
        digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(teacher: Teacher, inputs: TeacherInputs, pca: PCABasis | None = None) -> str:
    """The full sha256 key of ``teacher``'s features for ``inputs`` (module docstring); ``pca``: the given basis the
    features are projected with (another split's), instead of one fitted on these inputs."""
    header = {
        "format": CACHE_FORMAT_VERSION,
        "teacher": teacher.name,
        "config": json.loads(teacher.config.feature_identity_json()),
        "num_images": len(inputs),
        "image_hw": list(inputs.image_hw),
    }
    if pca is not None:
        header["pca"] = pca_digest(pca)
    return content_key(header, inputs, teacher.requires_ground_truth)


def cache_path(cache_dir: Path, teacher_name: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", teacher_name)
    return Path(cache_dir) / f"{safe}-{key[:16]}.pt"


def _payload(result: TeacherFeatures) -> dict[str, Any]:
    pca = result.pca
    return {
        "format": CACHE_FORMAT_VERSION,
        "key": result.cache_key,
        "teacher_name": result.teacher_name,
        "is_synthetic": result.is_synthetic,
        "stride": result.stride,
        "image_hw": list(result.image_hw),
        "dtype": str(result.features.dtype),
        "features": result.features.detach().cpu().contiguous(),
        "pca_mean": None if pca is None else pca.mean,
        "pca_components": None if pca is None else pca.components,
        "pca_explained_variance": None if pca is None else pca.explained_variance,
    }


def save_atomic(path: Path, payload: Any) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same directory and ``os.replace``; on failure
    nothing is left behind (and the error is re-raised)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_cached(path: Path, result: TeacherFeatures) -> None:
    """Write ``result`` to ``path`` atomically; on failure leave nothing behind (and re-raise)."""
    save_atomic(path, _payload(result))


def _mismatch(data: Any, key: str, expected: TeacherFeatures) -> str | None:
    """Why a loaded cache payload cannot stand in for ``expected`` (only its shape, dtype and metadata count)."""
    if not isinstance(data, dict):
        return f"holds a {type(data).__name__}, not a dict"
    checks = {
        "format": CACHE_FORMAT_VERSION,
        "key": key,
        "teacher_name": expected.teacher_name,
        "is_synthetic": expected.is_synthetic,
        "stride": expected.stride,
        "image_hw": list(expected.image_hw),
        "dtype": str(expected.features.dtype),
    }
    for name, want in checks.items():
        if data.get(name) != want:
            return f"{name} is {str(data.get(name))[:40]!r}, expected {str(want)[:40]!r}"
    feats = data.get("features")
    if not isinstance(feats, torch.Tensor):
        return "has no feature tensor"
    if tuple(feats.shape) != tuple(expected.features.shape) or feats.dtype != expected.features.dtype:
        return f"features are {tuple(feats.shape)} {feats.dtype}, expected {tuple(expected.features.shape)}"
    return None


def load_cached(path: Path, key: str, expected: TeacherFeatures) -> TeacherFeatures | None:
    """The cached features at ``path`` if the file is valid for ``key`` and shaped like ``expected`` (whose
    ``features`` may be an empty template of the right shape and dtype); else None, with one warning unless the
    file does not exist."""
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / corrupt files raise many types
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        _warn(f"teacher cache file {path} is unreadable ({type(exc).__name__}: {first}); recomputing")
        return None
    reason = _mismatch(data, key, expected)
    if reason is not None:
        _warn(f"teacher cache file {path} is stale ({reason}); recomputing")
        return None
    feats = data["features"]
    if not bool(torch.isfinite(feats).all()):
        _warn(f"teacher cache file {path} contains NaN or inf (corrupt); recomputing")
        return None
    pca = None
    if data.get("pca_components") is not None:
        pca = PCABasis(data["pca_mean"], data["pca_components"], data["pca_explained_variance"])
    return TeacherFeatures(
        features=feats,
        stride=expected.stride,
        image_hw=expected.image_hw,
        teacher_name=expected.teacher_name,
        is_synthetic=expected.is_synthetic,
        pca=pca,
        cache_key=key,
    )


def _warn(message: str) -> None:
    warnings.warn(message, TeacherCacheWarning, stacklevel=3)


def _extract_all(teacher: Teacher, inputs: TeacherInputs, out: torch.Tensor) -> None:
    """Fill ``out`` (n, h, w, raw_dim) with validated per-image features, batch by batch, with a progress bar."""
    n = len(inputs)
    grid = tuple(out.shape[1:3])
    progress = Progress(
        TextColumn(f"[bold]teacher {teacher.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not teacher.config.show_progress,
    )
    with progress:
        task = progress.add_task("extract", total=n)
        for start in range(0, n, max(1, teacher.batch_size)):
            indices = list(range(start, min(n, start + max(1, teacher.batch_size))))
            images = [inputs.image(i) for i in indices]
            gts = [inputs.ground_truth(i) for i in indices]
            batch = teacher.extract_many(images, indices, gts)
            for i, feats in zip(indices, batch, strict=True):
                check_patch_features(feats, teacher.name, i, grid, teacher.feature_dim)
                out[i] = feats.to(out.dtype)
            progress.advance(task, len(indices))


def _reduce(
    raw: torch.Tensor, config: TeacherConfig, teacher_name: str, basis: PCABasis | None = None
) -> tuple[torch.Tensor, PCABasis]:
    """Dataset-level PCA to ``config.pca_dim`` (fitted here, or the given ``basis``) and re-normalisation."""
    n, h, w, c = raw.shape
    if basis is None:
        flat = raw.reshape(n * h * w, c)
        samples = sample_rows(flat, config.pca_max_samples, config.pca_seed)
        if samples.shape[0] < config.pca_dim:
            warnings.warn(
                f"teacher '{teacher_name}': PCA to {config.pca_dim} dims fitted on only {samples.shape[0]} patches",
                stacklevel=3,
            )
        basis = fit_pca(samples, config.pca_dim)
    elif (basis.in_dim, basis.out_dim) != (c, config.pca_dim):
        raise ConfigError(
            f"teacher '{teacher_name}': the given PCA basis maps {basis.in_dim} -> {basis.out_dim} dims, but the "
            f"teacher gives {c} and pca_dim is {config.pca_dim}"
        )
    dtype = getattr(torch, config.storage_dtype)
    out = torch.empty((n, h, w, config.pca_dim), dtype=dtype)
    for i in range(n):  # per image keeps the float32 temporaries small
        out[i] = l2_normalize(basis.project(raw[i])).to(dtype)
    return out, basis


def compute_teacher_features(
    config: TeacherConfig,
    inputs: TeacherInputs,
    cache_dir: Path | None = None,
    expected_dim: int | None = None,
    pca: PCABasis | None = None,
) -> TeacherFeatures:
    """Patch features of every image of ``inputs`` by the teacher ``config`` describes: from the cache in
    ``cache_dir`` when a valid file exists, else extracted (progress bar), reduced by dataset-level PCA when
    ``config.pca_dim`` is set, validated and cached. ``expected_dim`` (e.g. a model's feature-head size) is checked
    against the config before any work. ``pca``: project with this basis instead of fitting one (the basis of the
    dataset's training split, so that every split and the models compare features in one space; DINO and appearance
    features of two splits in two bases are not comparable). Raises :class:`TeacherError` / :class:`ConfigError`
    with one line."""
    teacher: Teacher = config.setup()
    out_dim = config.output_dim()
    if expected_dim is not None and expected_dim != out_dim:
        raise ConfigError(
            f"teacher '{teacher.name}' gives {out_dim}-dim features but {expected_dim} are expected "
            f"(set the teacher's pca_dim to {expected_dim})"
        )
    if teacher.requires_ground_truth and not inputs.has_ground_truth:
        raise TeacherError(
            f"teacher '{teacher.name}' needs ground-truth semantics, but the data has none (use a teacher that sees "
            "only pixels: pipeline.datamanager.teacher:appearance)"
        )
    grid = teacher.grid_hw(inputs.image_hw)
    dtype = getattr(torch, config.storage_dtype)
    expected = TeacherFeatures(  # what the result must look like (the empty tensor only carries shape and dtype)
        features=torch.empty((len(inputs), *grid, out_dim), dtype=dtype),
        stride=teacher.stride,
        image_hw=inputs.image_hw,
        teacher_name=teacher.name,
        is_synthetic=teacher.is_synthetic,
    )
    key = path = None
    if cache_dir is not None:
        key = cache_key(teacher, inputs, pca if config.pca_dim is not None else None)
        path = cache_path(Path(cache_dir), teacher.name, key)
        cached = load_cached(path, key, expected)
        if cached is not None:
            return cached

    teacher.prepare(inputs)
    features = torch.empty((len(inputs), *grid, teacher.feature_dim), dtype=dtype)
    _extract_all(teacher, inputs, features)
    if config.pca_dim is None:
        pca = None
    else:
        features, pca = _reduce(features, config, teacher.name, pca)
        for i in range(len(inputs)):
            check_patch_features(features[i], teacher.name, i, grid, out_dim, "features after PCA")
    result = dataclasses.replace(expected, features=features, pca=pca, cache_key=key)
    if path is not None:
        try:
            save_cached(path, result)
        except OSError as exc:
            _warn(f"could not write teacher cache file {path} ({exc}); continuing without caching")
    return result
