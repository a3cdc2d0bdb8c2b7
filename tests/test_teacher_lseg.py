"""LSeg teacher with random weights saved in the official checkpoint's key layout.

The full ViT-L/16 release is > 1 GB, so the end-to-end tests use the official code's smaller backbone
``clip_vitb32_384`` (same key layout, ViT-B/32 image backbone, the same CLIP ViT-B/32 text encoder); the layout of
both backbones is checked on the meta device against key counts and shapes read from the official code. No real
LSeg weights exist here: nothing below measures the quality of the features.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import socket
import urllib.request

import pytest
import torch
import torch.nn.functional as F

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers import TeacherError, TeacherInputs, TeacherWeightsError, cache_key, compute_teacher_features
from jacobinerf_ns.teachers.lseg import (
    IGNORED_PREFIXES,
    LSEG_BACKBONES,
    LSegModel,
    LSegTeacher,
    LSegTeacherConfig,
    network_input_hw,
    pool_to_grid,
    pool_to_grid_reference,
)
from jacobinerf_ns.teachers.text import ClipTextEncoder, ClipTextSpec

H, W = 64, 96  # network input 64 x 96, embedding 32 x 48, a 4 x 6 grid at stride 16
B32 = "clip_vitb32_384"
ORIGINAL_CODE_RAN: list[str] = []


class LightningCallbackLike:
    """Stands for a PyTorch-Lightning class that a real checkpoint refers to (as a dict key)."""


class HParamsLike(dict):
    """Stands for Lightning's AttributeDict of hyper-parameters: its own code must never run on load."""

    def __setstate__(self, state):
        ORIGINAL_CODE_RAN.append("HParamsLike.__setstate__")
        self.__dict__.update(state)


def lseg(**kwargs) -> LSegTeacherConfig:
    defaults = dict(backbone=B32, load_size=None, show_progress=False, device="cpu")
    return LSegTeacherConfig(**{**defaults, **kwargs})


def scene(n: int = 3, seed: int = 0) -> TeacherInputs:
    images = torch.rand(n, H, W, 3, generator=torch.Generator().manual_seed(seed))
    if n > 1:
        images[1] = images[0]
    return TeacherInputs(images=images)


def no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the teacher tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="module")
def b32_state() -> dict[str, torch.Tensor]:
    """Random LSeg weights under the checkpoint's names (no ``net.``), with non-trivial batch-norm statistics; the
    CLIP entries in float16 as ``clip.load`` on CUDA leaves them; plus entries the teacher must ignore."""
    torch.manual_seed(5)
    model = LSegModel(LSEG_BACKBONES[B32])
    state = {k: v.clone() for k, v in model.checkpoint_state_dict().items()}
    gen = torch.Generator().manual_seed(6)
    for key, value in state.items():
        if key.endswith("running_mean") or (key.endswith(".bias") and "bn" in key):
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=gen)
        elif key.startswith("clip_pretrained."):
            state[key] = value.half()
    state.update(
        {
            "clip_pretrained.visual.proj": torch.zeros(768, 512, dtype=torch.float16),
            "clip_pretrained.visual.conv1.weight": torch.zeros(768, 3, 32, 32, dtype=torch.float16),
            "clip_pretrained.logit_scale": torch.tensor(4.6),
            "pretrained.model.norm.weight": torch.ones(768),
            "pretrained.model.norm.bias": torch.zeros(768),
            "pretrained.model.head.weight": torch.zeros(1000, 768),
            "pretrained.model.head.bias": torch.zeros(1000),
        }
    )
    return state


def lightning_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    hparams = HParamsLike(backbone=B32, num_features=256)
    hparams.note = "set on the instance, so that pickle stores a state and calls __setstate__"
    return {
        "epoch": 199,
        "global_step": 1000,
        "pytorch-lightning_version": "1.4.9",
        "state_dict": {f"net.{k}": v for k, v in state.items()},
        "callbacks": {LightningCallbackLike: {"best_model_score": torch.tensor(0.5)}},
        "hyper_parameters": hparams,
    }


@pytest.fixture(scope="module")
def b32_checkpoint(tmp_path_factory, b32_state):
    path = tmp_path_factory.mktemp("lseg") / "demo_b32.ckpt"
    torch.save(lightning_checkpoint(b32_state), path)
    return path


@pytest.mark.parametrize(
    ("backbone", "total", "used", "shapes"),
    [
        (
            "clip_vitb32_384",
            586,
            429,
            {
                "pretrained.model.pos_embed": (1, 145, 768),
                "pretrained.act_postprocess1.4.weight": (96, 96, 8, 8),
                "pretrained.act_postprocess3.4.weight": (384, 384, 2, 2),
                "pretrained.act_postprocess4.3.weight": (768, 768, 1, 1),
                "scratch.layer1_rn.weight": (256, 96, 3, 3),
                "scratch.refinenet4.resConfUnit1.bn2.running_var": (256,),
                "scratch.head1.weight": (512, 256, 1, 1),
                "clip_pretrained.transformer.resblocks.11.mlp.c_proj.weight": (512, 2048),
            },
        ),
        (
            "clip_vitl16_384",
            730,
            573,
            {
                "pretrained.model.pos_embed": (1, 577, 1024),
                "pretrained.model.blocks.23.attn.qkv.weight": (3072, 1024),
                "pretrained.act_postprocess1.4.weight": (256, 256, 4, 4),
                "pretrained.act_postprocess4.4.weight": (1024, 1024, 3, 3),
                "scratch.layer4_rn.weight": (256, 1024, 3, 3),
                "clip_pretrained.token_embedding.weight": (49408, 512),
            },
        ),
    ],
)
def test_lseg_key_layout_matches_the_official_release(backbone, total, used, shapes):
    """Counts and shapes read from the official code's state dict (``total`` entries in ``net.``, of which the
    ``total - used`` CLIP-visual / logit-scale / ViT-norm / ViT-head entries are ignored)."""
    with torch.device("meta"):
        model = LSegModel(LSEG_BACKBONES[backbone])
    state = model.checkpoint_state_dict()
    assert len(state) == used
    assert used + 152 + 1 + 2 + 2 == total  # CLIP-visual, logit scale, ViT norm, ViT head entries
    assert not any(k.startswith(IGNORED_PREFIXES) for k in state)
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    if backbone == B32:  # ViT-B/32's coarsest level already has stride 32: no resampling layer
        assert "pretrained.act_postprocess4.4.weight" not in state


def test_lseg_end_to_end_shapes_norms_determinism_and_cache(tmp_path, b32_checkpoint, monkeypatch):
    cfg = lseg(checkpoint=b32_checkpoint)
    assert cfg.pca_dim is None
    out = compute_teacher_features(cfg, scene(), tmp_path / "cache")
    assert out.features.shape == (3, 4, 6, 512) and out.features.dtype == torch.float16 and out.pca is None
    assert out.stride == 16 and out.teacher_name == f"lseg-{B32}" and not out.is_synthetic
    norms = out.features.double().norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=2e-3)
    assert torch.equal(out.features[0], out.features[1])
    assert (out.features[0].float() - out.features[2].float()).abs().max() > 1e-2
    assert (out.features[0, 0, 0].float() - out.features[0, 3, 5].float()).abs().max() > 1e-2
    again = compute_teacher_features(cfg, scene(), None)
    assert torch.equal(again.features, out.features)

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted on a cache hit")

    monkeypatch.setattr(LSegTeacher, "extract_many", no_extraction)
    hit = compute_teacher_features(cfg, scene(), tmp_path / "cache")
    assert torch.equal(hit.features, out.features) and hit.cache_key == out.cache_key


def test_lseg_loads_the_files_weights_without_running_foreign_code(b32_checkpoint, b32_state):
    with pytest.raises(Exception, match="(?i)global"):  # plain weights_only loading refuses this file
        torch.load(b32_checkpoint, map_location="cpu", weights_only=True)
    ORIGINAL_CODE_RAN.clear()
    teacher = LSegTeacher(lseg(checkpoint=b32_checkpoint))
    loaded = teacher.model.checkpoint_state_dict()
    assert ORIGINAL_CODE_RAN == []
    for key, value in loaded.items():
        assert torch.equal(value, b32_state[key].to(value.dtype)), key
    assert loaded["clip_pretrained.text_projection"].dtype == torch.float32
    random = LSegTeacher(lseg(random_init=True))
    assert random.name == f"lseg-{B32}-random-init"
    assert not torch.equal(random.model.checkpoint_state_dict()["scratch.head1.weight"], loaded["scratch.head1.weight"])
    plain = teacher.model.image.pretrained.model.blocks[0].attn.qkv.weight
    assert plain.dtype == torch.float32 and not plain.requires_grad


def test_lseg_checkpoint_with_missing_or_misshaped_key_is_a_one_line_error(tmp_path, b32_state):
    missing = {k: v for k, v in b32_state.items() if k != "scratch.refinenet2.out_conv.bias"}
    torch.save(missing, tmp_path / "missing.ckpt")  # a plain state dict (lseg-minimal style, no net. prefix)
    with pytest.raises(TeacherWeightsError) as info:
        _ = LSegTeacher(lseg(checkpoint=tmp_path / "missing.ckpt")).model
    assert "\n" not in str(info.value)
    assert f"does not fit {B32}: missing keys ['scratch.refinenet2.out_conv.bias']" in str(info.value)
    wrong = dict(b32_state, **{"pretrained.act_postprocess1.4.weight": torch.zeros(96, 96, 4, 4)})
    torch.save({"state_dict": {f"net.{k}": v for k, v in wrong.items()}}, tmp_path / "wrong.ckpt")
    with pytest.raises(TeacherWeightsError, match=r"act_postprocess1.4.weight has shape \(96, 96, 4, 4\), expected"):
        _ = LSegTeacher(lseg(checkpoint=tmp_path / "wrong.ckpt")).model
    extra = {"state_dict": {"net.scratch.new_head.weight": torch.zeros(2)}}
    torch.save(extra, tmp_path / "extra.ckpt")
    with pytest.raises(TeacherWeightsError, match=r"unexpected keys \['scratch.new_head.weight'\]"):
        _ = LSegTeacher(lseg(checkpoint=tmp_path / "extra.ckpt")).model
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherWeightsError, match="cannot read LSeg teacher checkpoint"):
        _ = LSegTeacher(lseg(checkpoint=tmp_path / "garbage.ckpt")).model
    for cache_dir in (None, tmp_path / "cache"):
        with pytest.raises(TeacherWeightsError, match="LSeg teacher checkpoint not found"):
            compute_teacher_features(lseg(checkpoint=tmp_path / "nowhere.ckpt"), scene(1), cache_dir)


def test_lseg_without_checkpoint_is_one_clear_error_and_never_downloads(tmp_path, monkeypatch):
    no_network(monkeypatch)
    with pytest.raises(TeacherWeightsError) as info:
        compute_teacher_features(LSegTeacherConfig(show_progress=False), scene(1), tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message and "clip_vitl16_384" in message and "no checkpoint given" in message
    assert "demo_e200.ckpt" in message and "`checkpoint` option" in message


def test_lseg_vit_matches_timm_at_native_size(b32_checkpoint):
    """At 384 x 384 no interpolation happens: the hooked blocks must equal timm's ViT-B/32 with the same weights."""
    from timm.models.vision_transformer import VisionTransformer

    teacher = LSegTeacher(lseg(checkpoint=b32_checkpoint))
    ours = teacher.model.image.pretrained.model
    ref = VisionTransformer(img_size=384, patch_size=32, embed_dim=768, depth=12, num_heads=12, num_classes=0)
    result = ref.load_state_dict(ours.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["norm.bias", "norm.weight"] and not result.unexpected_keys
    captured = {}
    for i in LSEG_BACKBONES[B32].hooks:
        ref.blocks[i].register_forward_hook(lambda mod, inp, out, i=i: captured.setdefault(i, out))
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        ref.eval().forward_features(x)
        outs = ours(x)
    assert len(outs) == 4
    for out, i in zip(outs, LSEG_BACKBONES[B32].hooks, strict=True):
        assert torch.allclose(out, captured[i], atol=1e-4, rtol=1e-4), i


def test_pool_to_grid_matches_reference_float64():
    gen = torch.Generator().manual_seed(0)
    for shape, grid in (((2, 5, 32, 48), (4, 6)), ((1, 7, 37, 53), (5, 7)), ((1, 3, 9, 9), (4, 4))):
        pixels = torch.randn(*shape, generator=gen, dtype=torch.float64)
        fast, slow = pool_to_grid(pixels, grid), pool_to_grid_reference(pixels, grid)
        assert fast.shape == (shape[0], *grid, shape[1])
        assert torch.allclose(fast, slow, atol=1e-12)
    # pooling normalised embeddings differs from normalising pooled raw ones: the reference would notice a swap
    pixels = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 10, 8)
    raw_first = F.normalize(F.adaptive_avg_pool2d(pixels, (2, 2)), dim=1).permute(0, 2, 3, 1)
    assert not torch.allclose(raw_first, pool_to_grid_reference(pixels, (2, 2)), atol=1e-3)


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_clip_text_encoder_matches_open_clip(quick_gelu):
    """Our CLIP text tower (OpenAI layout) against open_clip's CLIP.encode_text with the same random weights."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(1)
    text_cfg = CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=2, layers=2)
    ref = CLIP(
        32,
        CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=32),
        text_cfg,
        quick_gelu=quick_gelu,
    )
    ref.eval()
    ours = ClipTextEncoder(ClipTextSpec(width=64, layers=2, heads=2, embed_dim=32, quick_gelu=quick_gelu)).eval()
    text_state = {k: v for k, v in ref.state_dict().items() if not k.startswith(("visual.", "logit_"))}
    ours.load_state_dict(text_state, strict=True)
    texts = ["a chair", "the wooden table by the window", "a chair"]
    with torch.no_grad():
        expected = F.normalize(ref.encode_text(open_clip.tokenize(texts)), dim=-1)
    got = ours.encode(texts)
    assert got.shape == (3, 32) and torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(got[0], got[2]) and (got[0] - got[1]).abs().max() > 1e-3


def test_lseg_text_embeddings_share_the_image_space(b32_checkpoint):
    teacher = LSegTeacher(lseg(checkpoint=b32_checkpoint))
    text = teacher.encode_text(["a sofa", "a lamp", "a sofa"])
    assert text.shape == (3, 512) and text.dtype == torch.float32 and text.device.type == "cpu"
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(text[0], text[2]) and (text[0] - text[1]).abs().max() > 1e-3
    image = teacher.extract(torch.rand(H, W, 3), 0, None)
    assert image.shape == (4, 6, 512) and image.shape[-1] == text.shape[-1] == teacher.feature_dim
    scores = image.reshape(-1, 512) @ text.T
    assert scores.shape == (24, 3) and bool((scores.abs() <= 1 + 1e-5).all())
    for bad in ("a sofa", [], [None]):
        with pytest.raises(TeacherError, match="encode_text|non-empty string"):
            teacher.encode_text(bad)


def test_lseg_config_grid_and_cache_key(tmp_path):
    assert network_input_hw((120, 160), 480) == (480, 640)
    assert network_input_hw((100, 150), None) == (96, 160)
    assert network_input_hw((10, 20), None) == (32, 32)
    teacher = LSegTeacher(LSegTeacherConfig(show_progress=False))
    assert teacher.grid_hw((120, 160)) == (30, 40) and teacher.feature_dim == 512 and teacher.config.pca_dim is None
    with pytest.raises(ConfigError, match="stride 1 is finer"):
        LSegTeacher(lseg(stride=1))
    with pytest.raises(ConfigError, match="gives 512-dim features but 64 are expected"):
        compute_teacher_features(lseg(random_init=True), scene(1), None, expected_dim=64)
    inputs = scene(2)
    key = cache_key(LSegTeacher(lseg(random_init=True)), inputs)
    assert key == cache_key(LSegTeacher(lseg(random_init=True, batch_size=1, show_progress=True)), inputs)
    assert key != cache_key(LSegTeacher(lseg(random_init=True, stride=8)), inputs)
    assert key != cache_key(LSegTeacher(lseg(random_init=True, init_seed=2)), inputs)
    ckpt = tmp_path / "w.ckpt"
    ckpt.write_bytes(b"one")
    k1 = cache_key(LSegTeacher(lseg(checkpoint=ckpt)), inputs)
    ckpt.write_bytes(b"two!")
    assert k1 != cache_key(LSegTeacher(lseg(checkpoint=ckpt)), inputs)
    small = compute_teacher_features(lseg(random_init=True, stride=8), scene(1), None)
    assert small.features.shape == (1, 8, 12, 512)
