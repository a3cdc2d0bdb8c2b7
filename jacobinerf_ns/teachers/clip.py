"""CLIP teacher through open_clip: dense, text-aligned patch features in the MaskCLIP style, and CLIP's text encoder.

Dense features (MaskCLIP, Zhou et al., ECCV 2022): the image runs through CLIP's vision transformer up to its last
block; there the query-key attention is skipped and each patch token keeps only its own *value* embedding
(``ln_1`` → the value rows of the fused in-projection → ``out_proj``, times the block's layer scale when the model
has one; no residual, no MLP), which then goes through the tower's ``ln_post`` and ``proj`` exactly as the pooled
image embedding does. Each patch thus lands in the joint image-text space, so that its cosine with a text embedding
(:meth:`ClipTeacher.encode_text`) is a zero-shot score. The features are L2-normalised and, for that reason, kept
in CLIP's own space: no PCA by default (``pca_dim=None``).

The image is resized so that its shorter side is ``load_size`` and both sides are multiples of the patch size (the
grid of :func:`~jacobinerf_ns.teachers.base.patch_grid_hw`), normalised with the weights' mean/std, and the
positional embedding is bicubically interpolated to that grid (CLS entry untouched), so any image size works.

Weights, in order of precedence:

* ``checkpoint``: a local file: an open_clip state dict (``open_clip_pytorch_model.bin``, ``*.safetensors``, a
  ``{"state_dict": ...}`` training checkpoint, ``module.`` prefixes stripped) or an OpenAI TorchScript release
  (``ViT-B-16.pt``). ``pretrained`` still names the tag the file was released under (it sets QuickGELU and the
  normalisation).
* else ``pretrained`` (a tag of ``open_clip.list_pretrained_tags_by_model(model_name)``): the file in the local
  Hugging Face hub cache (``cache_dir``, default ``$HF_HUB_CACHE``) or open_clip's URL cache (``~/.cache/clip``).
  Nothing is ever downloaded: a missing file is one :class:`TeacherWeightsError` line that says which file to fetch
  and how to pass it.
* else (``pretrained=None``): a seeded random initialisation, for tests only (the teacher's name says
  ``random-init``).

Every key of the model must be in the file with its shape (a missing, unexpected or mis-shaped key is a one-line
:class:`TeacherWeightsError` naming it). Supported: open_clip's own ViT towers (``ViT-B-16``, ``ViT-B-32``,
``ViT-L-14``, ``-quickgelu`` variants, ...), not timm- or Hugging-Face-tower models (SigLIP, EVA, ConvNeXt, CoCa).

The module also holds the weight-file helpers the LSeg teacher shares (:func:`read_weight_file`,
:func:`check_state_dict`, :func:`resize_pos_embed`, :func:`weights_sha256`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import types
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers.base import (
    GroundTruth,
    NetworkTeacher,
    TeacherConfig,
    TeacherError,
    TeacherWeightsError,
    l2_normalize,
)
from jacobinerf_ns.teachers.text import check_texts, import_open_clip

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_TORCHSCRIPT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

# ------------------------------------------------------------------------------------------ weight-file helpers

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def weights_sha256(path: str | Path, label: str) -> str:
    """sha256 of a weight file (memoised per path, size and mtime); a missing file is a one-line error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherWeightsError(f"{label} not found: {path}")
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
        _SHA_CACHE[memo] = digest.hexdigest()
    return _SHA_CACHE[memo]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


class _Inert(dict):
    """Stand-in for a class a checkpoint refers to but that is not loaded (e.g. a PyTorch-Lightning callback or
    hyper-parameter dict): accepts any construction, items and state, and runs no code of the original."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        pass


@functools.cache
def _stand_in(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (_Inert,), {"__module__": __name__, "__qualname__": name})


def _torch_allowed_globals() -> dict[str, Any]:
    """What ``torch.load(weights_only=True)`` may resolve (its own allowlist plus ``add_safe_globals``)."""
    from torch import _weights_only_unpickler as wo

    allowed = dict(wo._get_allowed_globals())
    allowed.update(wo._get_user_allowed_globals())
    return allowed


class _InertUnpickler(pickle.Unpickler):
    """Resolves only the globals ``weights_only`` loading allows; every other one becomes an inert stand-in."""

    def find_class(self, module: str, name: str) -> Any:
        return _torch_allowed_globals().get(f"{module}.{name}") or _stand_in(f"{module}.{name}")


_INERT_PICKLE = types.ModuleType("jacobinerf_inert_pickle")
_INERT_PICKLE.Unpickler = _InertUnpickler  # type: ignore[attr-defined]
_INERT_PICKLE.load = lambda fh, **kw: _InertUnpickler(fh, **kw).load()  # type: ignore[attr-defined]


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; if it refuses the file because of globals it does not know (classes of a
    training framework that is not installed here, e.g. PyTorch Lightning's), the file is read again resolving
    only the same allowed globals and replacing the others by inert stand-ins: the tensors load, no foreign code
    runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_INERT_PICKLE)


def read_weight_file(path: str | Path, label: str) -> Any:
    """The object in a weight file: ``*.safetensors``, a TorchScript archive (its state dict) or a ``torch.save``
    file (read as in :func:`_torch_load`). Missing or unreadable files are one-line :class:`TeacherWeightsError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherWeightsError(f"{label} not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if _is_torchscript(path):  # OpenAI's release format
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
            for key in _TORCHSCRIPT_EXTRA_KEYS:
                state.pop(key, None)
            return state
        return _torch_load(path)
    except Exception as exc:
        raise TeacherWeightsError(f"cannot read {label} {path} ({first_line(exc)})") from exc


def unwrap_state_dict(
    obj: Any, label: str, wrappers: tuple[str, ...] = ("state_dict", "model"), prefixes: tuple[str, ...] = ("module.",)
) -> dict[str, Tensor]:
    """The state dict inside a checkpoint object: the first ``wrappers`` entry that is a dict (or the object
    itself), with ``prefixes`` stripped from the keys; non-tensor entries are a one-line error."""
    if not isinstance(obj, Mapping):
        raise TeacherWeightsError(f"{label} holds a {type(obj).__name__}, not a state dict")
    for wrapper in wrappers:
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise TeacherWeightsError(f"{label}: entry {key!r} is a {type(value).__name__}, not a tensor")
        stripped = True
        while stripped:
            stripped = False
            for prefix in prefixes:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        out[key] = value
    if not out:
        raise TeacherWeightsError(f"{label} holds no weights")
    return out


def _few(keys: list[str]) -> str:
    return f"{keys[:4]}{'...' if len(keys) > 4 else ''} ({len(keys)})"


def check_state_dict(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], label: str) -> None:
    """One-line :class:`TeacherWeightsError` unless ``state`` has exactly ``expected``'s keys and shapes."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing keys {_few(missing)}"] if missing else []) + (
            [f"unexpected keys {_few(unexpected)}"] if unexpected else []
        )
        raise TeacherWeightsError(f"{label}: {', '.join(parts)}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise TeacherWeightsError(
                f"{label}: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)} "
                "(a checkpoint of another model?)"
            )


def resize_pos_embed(
    pos: Float[Tensor, "n c"], grid_hw: tuple[int, int], mode: str = "bicubic", prefix_tokens: int = 1
) -> Float[Tensor, "m c"]:
    """Interpolate a positional embedding of ``prefix_tokens`` + a square grid of patch entries to ``grid_hw``
    (``align_corners=False``); the prefix (CLS) entries are kept as they are."""
    prefix, patches = pos[:prefix_tokens], pos[prefix_tokens:]
    side = round(patches.shape[0] ** 0.5)
    if side * side != patches.shape[0]:
        raise TeacherWeightsError(f"positional embedding with {patches.shape[0]} patch entries is not a square grid")
    if (side, side) == tuple(grid_hw):
        return pos
    grid = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(grid_hw), mode=mode, align_corners=False).to(pos.dtype)
    return torch.cat([prefix, grid[0].permute(1, 2, 0).reshape(grid_hw[0] * grid_hw[1], -1)], dim=0)


# ----------------------------------------------------------------------------------------------- open_clip facts


@functools.cache
def open_clip_model_config(model_name: str) -> dict[str, Any]:
    """open_clip's architecture config of ``model_name`` (a ConfigError when unknown or unsupported)."""
    open_clip = import_open_clip("the CLIP teacher")
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        vits = [m for m in open_clip.list_models() if m.startswith("ViT-")]
        raise ConfigError(f"unknown open_clip model {model_name!r}; e.g. one of {vits[:12]}")
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    unsupported = [k for k in ("timm_model_name",) if k in vision] + [
        k for k in ("hf_model_name", "hf_tokenizer_name") if k in text
    ]
    if vision.get("attentional_pool") or "multimodal_cfg" in cfg:
        unsupported.append("attentional_pool")
    if not isinstance(vision.get("layers"), int) or not isinstance(vision.get("patch_size"), int):
        unsupported.append("non-ViT or non-square-patch vision tower")
    if vision.get("pos_embed_type", "learnable") != "learnable":
        unsupported.append("pos_embed_type")
    if unsupported:
        raise ConfigError(
            f"open_clip model {model_name!r} is not supported by the CLIP teacher ({', '.join(unsupported)}): "
            "only open_clip's own ViT towers (e.g. ViT-B-16, ViT-B-32, ViT-L-14)"
        )
    return cfg


def open_clip_pretrained_config(model_name: str, tag: str) -> dict[str, Any]:
    """open_clip's record of the weights ``tag`` of ``model_name`` (a ConfigError when unknown)."""
    open_clip = import_open_clip("the CLIP teacher")
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ConfigError(f"open_clip has no weights {tag!r} for {model_name}; its tags: {tags}")
    return dict(cfg)


def cached_pretrained_file(model_name: str, tag: str, cache_dir: Path | None) -> tuple[Path | None, str]:
    """The weight file of ``tag`` in the local caches (None if absent) and a description of where it was looked
    for. Only looks: never downloads."""
    cfg = open_clip_pretrained_config(model_name, tag)
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        import huggingface_hub

        repo_id, filename = os.path.split(hub)  # open_clip's rule: "org/name/" = default file names
        names = [filename] if filename else list(_HF_WEIGHT_FILES)
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        root = Path(cache_dir).expanduser() if cache_dir is not None else Path(huggingface_hub.constants.HF_HUB_CACHE)
        for name in names:
            found = huggingface_hub.try_to_load_from_cache(repo_id, name, cache_dir=str(root))
            if isinstance(found, str) and Path(found).is_file():
                return Path(found), ""
        looked.append(f"hf-hub:{repo_id} ({' or '.join(names)}) in {root}")
    url = cfg.get("url", "")
    if url:
        root = Path(cache_dir).expanduser() if cache_dir is not None else Path("~/.cache/clip").expanduser()
        candidate = root / os.path.basename(url)
        if candidate.is_file():
            return candidate, ""
        looked.append(f"{url} as {candidate}")
    return None, "; ".join(looked)


# ------------------------------------------------------------------------------------------------ MaskCLIP math


def maskclip_values(block: nn.Module, x: Float[Tensor, "b n c"]) -> Float[Tensor, "b n c"]:
    """MaskCLIP's replacement of an open_clip ``ResidualAttentionBlock``: each token's own value embedding through
    the out-projection (and the layer scale), i.e. attention that only attends to itself; no residual, no MLP."""
    attn = block.attn
    c = attn.embed_dim
    bias = attn.in_proj_bias[2 * c :] if attn.in_proj_bias is not None else None
    v = F.linear(block.ln_1(x), attn.in_proj_weight[2 * c :], bias)
    return block.ls_1(attn.out_proj(v))


def maskclip_values_reference(block: nn.Module, x: Float[Tensor, "b n c"]) -> Float[Tensor, "b n c"]:
    """Slow twin of :func:`maskclip_values`: the block's own ``nn.MultiheadAttention`` with a mask that lets every
    token attend only to itself (softmax weight 1 on its own value)."""
    n = x.shape[1]
    mask = torch.full((n, n), float("-inf"), dtype=x.dtype, device=x.device)
    mask.fill_diagonal_(0.0)
    h = block.ln_1(x)
    if not block.attn.batch_first:
        out = block.attn(h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1), attn_mask=mask)[0].transpose(0, 1)
    else:
        out = block.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
    return block.ls_1(out)


# -------------------------------------------------------------------------------------------------- the teacher


@dataclass
class ClipTeacherConfig(TeacherConfig):
    """CLIP teacher (open_clip): MaskCLIP-style dense features in CLIP's image-text space."""

    _target: type = field(default_factory=lambda: ClipTeacher)
    """Teacher class to instantiate."""
    name: str = "clip"
    """Label of the teacher in results and cache files (the model name and weights tag are appended)."""
    model_name: str = "ViT-B-16"
    """open_clip architecture (one of its own ViT towers: ViT-B-16, ViT-B-32, ViT-L-14, ...)."""
    pretrained: str | None = "openai"
    """open_clip weights tag: read from the local cache when no checkpoint is given (never downloaded); also sets
    QuickGELU and the normalisation for a checkpoint file. None (and no checkpoint): random init, for tests."""
    checkpoint: Path | None = None
    """Local weight file (open_clip state dict, .safetensors, or an OpenAI TorchScript .pt); overrides the cache."""
    cache_dir: Path | None = None
    """Where to look for cached weights (None: the Hugging Face hub cache, then ~/.cache/clip)."""
    quick_gelu: bool | None = None
    """Force QuickGELU on/off; None: as the weights tag says (True for OpenAI's weights)."""
    init_seed: int = 0
    """Seed of the random initialisation (pretrained=None, no checkpoint)."""
    load_size: int | None = 448
    """Resize images so that their shorter side has this many pixels (then rounded to the patch size); None: as is."""
    pca_dim: int | None = None
    """PCA to this many dims; None (default): keep CLIP's own space, as text queries need."""
    batch_size: int = 4
    """Images per forward pass."""
    device: str | None = None
    """Torch device for extraction; None: CUDA when available, else CPU."""

    non_feature_fields = ("show_progress", "batch_size", "device", "cache_dir")

    def raw_dim(self) -> int:
        return int(open_clip_model_config(self.model_name)["embed_dim"])

    @property
    def patch_size(self) -> int:
        return int(open_clip_model_config(self.model_name)["vision_cfg"]["patch_size"])

    def weights_source(self) -> str:
        if self.checkpoint is not None:
            return "checkpoint"
        return "cache" if self.pretrained is not None else "random-init"

    def use_quick_gelu(self) -> bool:
        if self.quick_gelu is not None:
            return self.quick_gelu
        if self.pretrained is None:
            return False
        return bool(open_clip_pretrained_config(self.model_name, self.pretrained).get("quick_gelu", False))

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...], str]:
        """(mean, std, resize interpolation) of the weights."""
        pre = dict(open_clip_model_config(self.model_name).get("preprocess_cfg", {}))
        if self.pretrained is not None:
            pre.update(open_clip_pretrained_config(self.model_name, self.pretrained))
        interpolation = pre.get("interpolation", "bicubic")
        mode = "bilinear" if interpolation == "bilinear" else "bicubic"
        return tuple(pre.get("mean", OPENAI_MEAN)), tuple(pre.get("std", OPENAI_STD)), mode

    def feature_identity(self) -> dict[str, Any]:
        ident = super().feature_identity()
        for key in ("checkpoint", "init_seed"):
            ident.pop(key, None)
        source = self.weights_source()
        if source == "checkpoint":
            ident["weights"] = f"checkpoint-sha256:{weights_sha256(self.checkpoint, 'CLIP teacher checkpoint')}"
        elif source == "cache":
            ident["weights"] = f"open_clip:{self.model_name}:{self.pretrained}"
        else:
            ident["weights"] = f"random-init:{self.init_seed}"
        ident["quick_gelu"] = self.use_quick_gelu()
        return ident

    def check(self) -> None:
        open_clip_model_config(self.model_name)  # unknown / unsupported model first
        if self.pretrained is not None:
            open_clip_pretrained_config(self.model_name, self.pretrained)
        super().check()
        if self.load_size is not None and self.load_size < self.patch_size:
            raise ConfigError(f"CLIP teacher: load_size {self.load_size} is smaller than one patch ({self.patch_size})")


class ClipTeacher(NetworkTeacher):
    """MaskCLIP-style dense CLIP features and CLIP text embeddings (module docstring). The network is built on
    first use, so a cache hit needs no weights."""

    config: ClipTeacherConfig

    def __init__(self, config: ClipTeacherConfig) -> None:
        super().__init__(config)
        self._tokenizer: Any = None
        self._pos_cache: dict[tuple[int, int], Tensor] = {}

    @property
    def name(self) -> str:
        cfg = self.config
        label = f"{cfg.name}-{cfg.model_name}"
        if cfg.weights_source() == "random-init":
            return label + "-random-init"
        return label + (f"-{cfg.pretrained}" if cfg.pretrained is not None else "")

    @property
    def stride(self) -> int:
        return self.config.patch_size

    def _weights_path(self) -> Path | None:
        cfg = self.config
        source = cfg.weights_source()
        if source == "checkpoint":
            return Path(cfg.checkpoint).expanduser()
        if source == "random-init":
            return None
        path, looked = cached_pretrained_file(cfg.model_name, cfg.pretrained, cfg.cache_dir)
        if path is None:
            raise TeacherWeightsError(
                f"CLIP teacher {cfg.model_name}/{cfg.pretrained}: no pretrained weights in the local cache "
                f"(looked for {looked}; downloads are never attempted); fetch that file on a machine with internet "
                "and pass it with the teacher's `checkpoint` option (e.g. --pipeline.datamanager.teacher.checkpoint "
                "PATH)"
            )
        return path

    def _build_model(self) -> nn.Module:
        cfg = self.config
        path = self._weights_path()
        label = f"CLIP teacher checkpoint {path}"
        state = None
        if path is not None:  # read before building the network, so that a bad file fails fast
            state = unwrap_state_dict(read_weight_file(path, "CLIP teacher checkpoint"), label)
        open_clip = import_open_clip("the CLIP teacher")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = open_clip.create_model(cfg.model_name, pretrained=None, force_quick_gelu=cfg.use_quick_gelu())
        if state is not None:
            expected = model.state_dict()
            key = "visual.positional_embedding"
            pos = state.get(key)
            if pos is not None and pos.shape != expected[key].shape and pos.ndim == 2:
                if pos.shape[1] == expected[key].shape[1]:
                    state = dict(state, **{key: resize_pos_embed(pos, tuple(model.visual.grid_size))})
            check_state_dict(expected, state, f"{label} does not fit {cfg.model_name}")
            model.load_state_dict(state, strict=True)
        return model.eval().requires_grad_(False).to(self.device)

    def _pos_embed(self, grid_hw: tuple[int, int]) -> Tensor:
        if grid_hw not in self._pos_cache:
            self._pos_cache[grid_hw] = resize_pos_embed(self.model.visual.positional_embedding, grid_hw)
        return self._pos_cache[grid_hw]

    def preprocess(self, image: Float[Tensor, "H W 3"]) -> Float[Tensor, "3 h*p w*p"]:
        """Resize to the patch grid times the patch size and normalise with the weights' mean/std."""
        h, w = self.grid_hw(tuple(image.shape[:2]))
        p = self.stride
        mean, std, mode = self.config.normalisation()
        x = image.to(self.device, torch.float32).permute(2, 0, 1)[None]
        if tuple(x.shape[2:]) != (h * p, w * p):
            x = F.interpolate(x, size=(h * p, w * p), mode=mode, align_corners=False, antialias=True).clamp(0, 1)
        mean_t = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        std_t = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        return ((x - mean_t) / std_t)[0]

    def embed_tokens(self, batch: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b n c"]:
        """Patch embedding, CLS token, positional embedding (interpolated to the grid) and ``ln_pre``."""
        visual = self.model.visual
        b, _, height, width = batch.shape
        grid = (height // self.stride, width // self.stride)
        x = visual.conv1(batch.to(visual.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = visual.class_embedding.view(1, 1, -1).expand(b, -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + self._pos_embed(grid).to(x.dtype)
        return visual.ln_pre(x)

    @torch.no_grad()
    def forward_dense(self, batch: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b h w d"]:
        """Raw (not normalised) MaskCLIP features of a preprocessed batch."""
        visual = self.model.visual
        b, _, height, width = batch.shape
        grid = (height // self.stride, width // self.stride)
        x = self.embed_tokens(batch)
        batch_first = getattr(visual.transformer, "batch_first", True)
        blocks = visual.transformer.resblocks
        x = x if batch_first else x.transpose(0, 1)
        for block in blocks[:-1]:
            x = block(x)
        x = x if batch_first else x.transpose(0, 1)
        values = maskclip_values(blocks[-1], x)[:, 1:]
        return (visual.ln_post(values) @ visual.proj).reshape(b, *grid, -1)

    def extract_many(
        self, images: list[Tensor], indices: list[int], gts: list[GroundTruth | None]
    ) -> list[Float[Tensor, "h w d"]]:
        batch = torch.stack([self.preprocess(img) for img in images])
        return list(l2_normalize(self.forward_dense(batch).float()).cpu().unbind(0))

    def extract(self, image: Float[Tensor, "H W 3"], index: int, gt: GroundTruth | None) -> Float[Tensor, "h w d"]:
        return self.extract_many([image], [index], [gt])[0]

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Float[Tensor, "n d"]:
        """Unit-length CLIP text embeddings (float32, on the CPU), comparable by cosine with :meth:`extract`'s
        features (same space, same ``feature_dim``)."""
        texts = check_texts(texts, f"teacher '{self.name}'")
        if self._tokenizer is None:
            self._tokenizer = import_open_clip("the CLIP teacher").get_tokenizer(self.config.model_name)
        tokens = self._tokenizer(texts).to(self.device)
        out = self.model.encode_text(tokens).float()
        if out.ndim != 2 or out.shape[1] != self.feature_dim:
            raise TeacherError(f"teacher '{self.name}': text embeddings have shape {tuple(out.shape)}")
        return l2_normalize(out).cpu()
