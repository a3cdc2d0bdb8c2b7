"""CLIP teacher (open_clip, MaskCLIP-style dense features) with random weights saved in open_clip's key layout.

No real CLIP weights exist on this machine: these tests check shapes, normalisation, determinism, the cache, strict
key checking, the offline behaviour and the text encoder, never the quality of the features.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import socket
import urllib.request

import pytest
import torch
import torch.nn.functional as F

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers import TeacherError, TeacherInputs, TeacherWeightsError, cache_key, compute_teacher_features
from jacobinerf_ns.teachers.clip import (
    ClipTeacher,
    ClipTeacherConfig,
    maskclip_values,
    maskclip_values_reference,
    resize_pos_embed,
)

open_clip = pytest.importorskip("open_clip")

TINY = "JN-Tiny-ViT-16"
"""A small architecture in open_clip's own layout (its CLIP / VisionTransformer classes), registered for the tests."""
TINY_CFG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
H, W = 32, 48  # a 2 x 3 grid of 16-pixel patches


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("open_clip_cfg") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(scope="module")
def tiny_state(tiny_model) -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    model = open_clip.create_model(tiny_model, pretrained=None)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert "visual.transformer.resblocks.2.attn.in_proj_weight" in state and "text_projection" in state
    return state


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_state):
    path = tmp_path_factory.mktemp("clip_ckpt") / "open_clip_pytorch_model.bin"
    torch.save(tiny_state, path)
    return path


def clip_cfg(**kwargs) -> ClipTeacherConfig:
    defaults = dict(model_name=TINY, pretrained=None, load_size=None, show_progress=False, device="cpu")
    return ClipTeacherConfig(**{**defaults, **kwargs})


def scene(n: int = 3, seed: int = 0) -> TeacherInputs:
    images = torch.rand(n, H, W, 3, generator=torch.Generator().manual_seed(seed))
    if n > 1:
        images[1] = images[0]  # views 0 and 1 identical
    return TeacherInputs(images=images)


def no_network(monkeypatch) -> None:
    """Any attempt to reach the network fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


def test_clip_end_to_end_shapes_norms_determinism_and_cache(tmp_path, tiny_checkpoint, monkeypatch):
    cfg = clip_cfg(checkpoint=tiny_checkpoint)
    assert cfg.pca_dim is None  # text queries need CLIP's own space
    out = compute_teacher_features(cfg, scene(), tmp_path / "cache")
    assert out.features.shape == (3, 2, 3, 32) and out.features.dtype == torch.float16 and out.pca is None
    assert out.stride == 16 and out.teacher_name == f"clip-{TINY}" and not out.is_synthetic
    norms = out.features.double().norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=2e-3)
    assert torch.equal(out.features[0], out.features[1])
    assert (out.features[0].float() - out.features[2].float()).abs().max() > 1e-2
    assert (out.features[0, 0, 0].float() - out.features[0, 1, 2].float()).abs().max() > 1e-2
    again = compute_teacher_features(cfg, scene(), None)  # a fresh network from the same file
    assert torch.equal(again.features, out.features)

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted on a cache hit")

    monkeypatch.setattr(ClipTeacher, "extract_many", no_extraction)
    hit = compute_teacher_features(cfg, scene(), tmp_path / "cache")
    assert torch.equal(hit.features, out.features) and hit.cache_key == out.cache_key


def test_clip_loads_exactly_the_files_weights(tiny_checkpoint, tiny_state):
    teacher = ClipTeacher(clip_cfg(checkpoint=tiny_checkpoint))
    loaded = teacher.model.state_dict()
    assert set(loaded) == set(tiny_state) and all(torch.equal(loaded[k], tiny_state[k]) for k in tiny_state)
    random = ClipTeacher(clip_cfg()).model.state_dict()
    assert not torch.equal(random["visual.proj"], loaded["visual.proj"])
    assert ClipTeacher(clip_cfg()).name == f"clip-{TINY}-random-init"


def test_clip_checkpoint_with_missing_or_misshaped_key_is_a_one_line_error(tmp_path, tiny_state):
    missing = {k: v for k, v in tiny_state.items() if k != "visual.ln_post.weight"}
    torch.save({"state_dict": {f"module.{k}": v for k, v in missing.items()}}, tmp_path / "missing.pt")
    with pytest.raises(TeacherWeightsError) as info:
        _ = ClipTeacher(clip_cfg(checkpoint=tmp_path / "missing.pt")).model
    assert "\n" not in str(info.value)
    assert f"does not fit {TINY}: missing keys ['visual.ln_post.weight']" in str(info.value)
    wrong = dict(tiny_state, text_projection=torch.zeros(64, 16))
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(TeacherWeightsError, match=r"text_projection has shape \(64, 16\), expected \(64, 32\)"):
        _ = ClipTeacher(clip_cfg(checkpoint=tmp_path / "wrong.pt")).model
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherWeightsError, match="cannot read CLIP teacher checkpoint"):
        _ = ClipTeacher(clip_cfg(checkpoint=tmp_path / "garbage.pt")).model
    scripted = torch.jit.script(torch.nn.Linear(2, 2))  # an OpenAI-style TorchScript archive of another model
    scripted.save(str(tmp_path / "scripted.pt"))
    with pytest.raises(TeacherWeightsError, match=r"unexpected keys \['bias', 'weight'\]"):
        _ = ClipTeacher(clip_cfg(checkpoint=tmp_path / "scripted.pt")).model
    with pytest.raises(TeacherWeightsError, match="CLIP teacher checkpoint not found"):
        compute_teacher_features(clip_cfg(checkpoint=tmp_path / "nowhere.bin"), scene(1), tmp_path / "cache")


def test_clip_offline_without_weights_is_one_clear_error_and_never_downloads(tmp_path, monkeypatch):
    no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = ClipTeacherConfig(model_name="ViT-B-16", pretrained="openai", cache_dir=tmp_path, show_progress=False)
    with pytest.raises(TeacherWeightsError) as info:
        compute_teacher_features(cfg, scene(1), tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message and "ViT-B-16/openai" in message and "`checkpoint` option" in message
    assert "timm/vit_base_patch16_clip_224.openai" in message and "never attempted" in message


@pytest.fixture(scope="module")
def b16_teacher() -> ClipTeacher:
    """ViT-B/16 (the default architecture), random weights."""
    return ClipTeacher(clip_cfg(model_name="ViT-B-16", pretrained=None, init_seed=3))


def test_clip_reads_the_hub_cache(tmp_path, b16_teacher, monkeypatch):
    from safetensors.torch import save_file

    no_network(monkeypatch)
    repo = tmp_path / "models--timm--vit_base_patch16_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    state = {k: v.detach().half().contiguous() for k, v in b16_teacher.model.state_dict().items()}
    save_file(state, str(repo / "snapshots" / "0123abc" / "open_clip_model.safetensors"))
    cfg = clip_cfg(model_name="ViT-B-16", pretrained="openai", cache_dir=tmp_path)
    teacher = ClipTeacher(cfg)
    assert teacher.name == "clip-ViT-B-16-openai"
    loaded = teacher.model.state_dict()
    assert torch.equal(loaded["visual.proj"], state["visual.proj"].float())
    assert type(teacher.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"  # OpenAI's
    out = compute_teacher_features(cfg, scene(2), None)
    assert out.features.shape == (2, 2, 3, 512)


def test_maskclip_value_path_matches_attention_to_self_float64(tiny_model):
    torch.manual_seed(0)
    model = open_clip.create_model(tiny_model, pretrained=None).double().eval()
    block = model.visual.transformer.resblocks[-1]
    x = torch.randn(2, 7, 64, dtype=torch.float64)
    fast, slow = maskclip_values(block, x), maskclip_values_reference(block, x)
    assert torch.allclose(fast, slow, atol=1e-12, rtol=1e-10)
    wrong_rows = F.linear(block.ln_1(x), block.attn.in_proj_weight[64:128], block.attn.in_proj_bias[64:128])
    assert not torch.allclose(block.attn.out_proj(wrong_rows), slow, atol=1e-3)  # the reference sees a wrong slice


def test_clip_dense_pass_matches_open_clip_at_native_size(tiny_checkpoint):
    """At the native 64 x 64 no interpolation happens: our token pipeline must equal open_clip's own modules."""
    teacher = ClipTeacher(clip_cfg(checkpoint=tiny_checkpoint))
    visual = teacher.model.visual
    x = teacher.preprocess(torch.rand(64, 64, 3))[None]
    with torch.no_grad():
        assert torch.allclose(teacher.embed_tokens(x), visual._embeds(x), atol=1e-6)
        inter = visual.transformer.forward_intermediates(visual._embeds(x), indices=[1])[1][0]  # after block 1
        ref = visual.ln_post(maskclip_values_reference(visual.transformer.resblocks[-1], inter)[:, 1:]) @ visual.proj
    ours = teacher.forward_dense(x)
    assert ours.shape == (1, 4, 4, 32)
    assert torch.allclose(ours.reshape(1, 16, 32), ref, atol=1e-5)


def test_positional_embedding_follows_any_grid(b16_teacher):
    pos = b16_teacher.model.visual.positional_embedding
    assert pos.shape == (1 + 14 * 14, 768)
    resized = resize_pos_embed(pos, (3, 5))
    assert resized.shape == (1 + 15, 768) and torch.equal(resized[0], pos[0])
    assert resize_pos_embed(pos, (14, 14)) is pos
    feats = b16_teacher.extract(torch.rand(50, 70, 3), 0, None)  # grid round(50/16) x round(70/16)
    assert feats.shape == (3, 4, 512)
    square = ClipTeacher(clip_cfg(model_name="ViT-B-16", load_size=224))
    assert square.grid_hw((120, 160)) == (14, 19)


def test_clip_text_encoder_shape_norm_and_shared_space(tiny_checkpoint):
    teacher = ClipTeacher(clip_cfg(checkpoint=tiny_checkpoint))
    text = teacher.encode_text(["a chair", "a wooden table", "a chair"])
    assert text.shape == (3, 32) and text.dtype == torch.float32 and text.device.type == "cpu"
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(text[0], text[2]) and (text[0] - text[1]).abs().max() > 1e-3
    image = teacher.extract(torch.rand(H, W, 3), 0, None)
    assert image.shape[-1] == text.shape[-1] == teacher.feature_dim
    scores = image.reshape(-1, 32) @ text.T
    assert scores.shape == (6, 3) and bool((scores.abs() <= 1 + 1e-5).all())
    direct = F.normalize(teacher.model.encode_text(open_clip.tokenize(["a chair"])), dim=-1)
    assert torch.allclose(text[:1], direct, atol=1e-5)
    for bad in ("a chair", [], ["a chair", ""], [3]):
        with pytest.raises(TeacherError, match="encode_text|non-empty string"):
            teacher.encode_text(bad)


def test_clip_config_errors_and_cache_key(tmp_path, tiny_model, tiny_checkpoint):
    with pytest.raises(ConfigError, match="unknown open_clip model 'ViT-Q-99'"):
        ClipTeacher(clip_cfg(model_name="ViT-Q-99"))
    with pytest.raises(ConfigError, match="not supported by the CLIP teacher"):
        ClipTeacher(clip_cfg(model_name="ViT-B-16-SigLIP"))  # a timm vision tower
    with pytest.raises(ConfigError, match="no weights 'nonsense' for ViT-B-16; its tags"):
        ClipTeacher(clip_cfg(model_name="ViT-B-16", pretrained="nonsense"))
    with pytest.raises(ConfigError, match="gives 32-dim features but 64 are expected"):
        compute_teacher_features(clip_cfg(), scene(1), None, expected_dim=64)
    inputs = scene(2)
    key = cache_key(ClipTeacher(clip_cfg()), inputs)
    assert key == cache_key(ClipTeacher(clip_cfg(batch_size=1, show_progress=True, cache_dir=tmp_path)), inputs)
    assert key != cache_key(ClipTeacher(clip_cfg(init_seed=1)), inputs)
    assert key != cache_key(ClipTeacher(clip_cfg(load_size=32)), inputs)
    ckpt = tmp_path / "w.bin"
    ckpt.write_bytes(b"one")
    k1 = cache_key(ClipTeacher(clip_cfg(checkpoint=ckpt)), inputs)
    ckpt.write_bytes(b"two!")
    assert k1 != cache_key(ClipTeacher(clip_cfg(checkpoint=ckpt)), inputs)
