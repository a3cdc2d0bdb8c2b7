"""CLIP's text tower, for text queries against the features of the language-aligned teachers (CLIP, LSeg).

:class:`ClipTextEncoder` is CLIP's causal text transformer in OpenAI's parameter layout (``token_embedding.weight``,
``positional_embedding``, ``transformer.resblocks.<i>.{ln_1, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj,
ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_final``, ``text_projection``), the layout that OpenAI's release, open_clip's
``CLIP`` class and the ``clip_pretrained.*`` entries of LSeg checkpoints share. Its output is the projected
end-of-text token, L2-normalised: the space in which CLIP (and LSeg, which trains its pixel embeddings against it)
compares images with texts.

Tokens come from open_clip's copy of OpenAI's byte-pair tokenizer (its vocabulary ships in the open_clip_torch
wheel, so tokenising needs no download); open_clip is imported only when a text is first encoded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from jacobinerf_ns.teachers.base import TeacherError, l2_normalize

OPEN_CLIP_REQUIREMENT = "open_clip_torch==2.32.0"
"""The open_clip release that installs beside nerfstudio 1.1.5's timm==0.6.7 (3.x needs timm>=1.0.17)."""


class ClipTextSpec(NamedTuple):
    """Shape of a CLIP text tower."""

    width: int
    layers: int
    heads: int
    embed_dim: int
    context_length: int = 77
    vocab_size: int = 49408
    quick_gelu: bool = True
    """OpenAI's models use QuickGELU (``x·σ(1.702x)``); most open_clip-trained ones exact GELU."""


CLIP_VITB32_TEXT = ClipTextSpec(width=512, layers=12, heads=8, embed_dim=512)
"""The text tower of OpenAI's CLIP ViT-B/32 (the text encoder of the official LSeg ViT checkpoints)."""


def import_open_clip(what: str) -> Any:
    """``import open_clip``, or a one-line :class:`TeacherError` saying how to install it."""
    try:
        import open_clip
    except ImportError as exc:
        raise TeacherError(f"{what} needs the package open_clip_torch (pip install '{OPEN_CLIP_REQUIREMENT}')") from exc
    return open_clip


def check_texts(texts: Any, who: str) -> list[str]:
    """``texts`` as a list of non-empty strings, else a one-line :class:`TeacherError` naming ``who``."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TeacherError(f"{who}: encode_text takes a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise TeacherError(f"{who}: encode_text got an empty list of texts")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise TeacherError(f"{who}: text {i} is {text!r}; every text must be a non-empty string")
    return list(texts)


def tokenize(texts: list[str], context_length: int = 77) -> Int[Tensor, "n L"]:
    """CLIP byte-pair tokens: start token, the lower-cased cleaned text, end token, zeros; texts longer than
    ``context_length`` are cut (keeping the end token)."""
    open_clip = import_open_clip("encoding text")
    return open_clip.tokenize(texts, context_length=context_length)


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation, ``x·σ(1.702x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class _TextBlock(nn.Module):
    """Pre-norm residual block: causal multi-head self-attention, then a 4× MLP."""

    def __init__(self, width: int, heads: int, quick_gelu: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        act = QuickGELU() if quick_gelu else nn.GELU()
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", act), ("c_proj", nn.Linear(4 * width, width))])
        )

    def forward(self, x: Float[Tensor, "n L c"], mask: Float[Tensor, "L L"]) -> Float[Tensor, "n L c"]:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _TextTransformer(nn.Module):
    def __init__(self, spec: ClipTextSpec) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            [_TextBlock(spec.width, spec.heads, spec.quick_gelu) for _ in range(spec.layers)]
        )


class ClipTextEncoder(nn.Module):
    """CLIP's text transformer (module docstring); :meth:`encode` maps strings to unit text embeddings."""

    def __init__(self, spec: ClipTextSpec) -> None:
        super().__init__()
        self.spec = spec
        self.token_embedding = nn.Embedding(spec.vocab_size, spec.width)
        self.positional_embedding = nn.Parameter(torch.empty(spec.context_length, spec.width))
        self.transformer = _TextTransformer(spec)
        self.ln_final = nn.LayerNorm(spec.width)
        self.text_projection = nn.Parameter(torch.empty(spec.width, spec.embed_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """CLIP's initialisation (only random-weight tests see it: real weights overwrite every entry)."""
        width, layers = self.spec.width, self.spec.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=width**-0.5 * (2 * layers) ** -0.5)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=width**-0.5 * (2 * layers) ** -0.5)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    @property
    def embed_dim(self) -> int:
        return self.spec.embed_dim

    def forward(self, tokens: Int[Tensor, "n L"]) -> Float[Tensor, "n d"]:
        """Raw (not normalised) embeddings: the projected final-norm state at each text's end token (the
        largest token id)."""
        n, length = tokens.shape
        if length != self.spec.context_length:
            raise TeacherError(f"CLIP text encoder: {length} tokens per text, expected {self.spec.context_length}")
        x = self.token_embedding(tokens) + self.positional_embedding
        mask = torch.full((length, length), float("-inf"), device=x.device, dtype=x.dtype).triu_(1)
        for block in self.transformer.resblocks:
            x = block(x, mask)
        x = self.ln_final(x)
        return x[torch.arange(n, device=x.device), tokens.argmax(dim=-1)] @ self.text_projection

    @torch.no_grad()
    def encode(self, texts: list[str]) -> Float[Tensor, "n d"]:
        """Unit-length float32 embeddings of ``texts``, on this module's device."""
        tokens = tokenize(check_texts(texts, "CLIP text encoder"), self.spec.context_length)
        return l2_normalize(self(tokens.to(self.positional_embedding.device)).float())
