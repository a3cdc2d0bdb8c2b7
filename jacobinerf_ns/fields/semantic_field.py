"""The radiance field shared by every method: hash grid → density MLP → colour MLP with an explicit last layer.

Colour of a sample (DESIGN §2): ``c = sigmoid(z)``, ``z = W h + b`` where ``W`` (3×K) is ``color_out.weight`` — the
θᴰ of JacobiNeRF — and ``h`` (K) is the output of the colour MLP's hidden layers. ``color_out`` is always a plain
``torch.nn.Linear`` so that closed-form Jacobians w.r.t. ``W`` only need ``h``, ``z`` and the volume-rendering
weights, with first-order autograd; the hash grid and density MLP may be tiny-cuda-nn.

Optional heads, both view-independent (they read no view direction, so a 3D query scores points, not rays):
semantic logits from the geometry features (as Semantic-NeRF), and distilled features from a small MLP on the
hash-grid encoding and the geometry features (DFF's feature branch; :meth:`SemanticRadianceField.features_at`
evaluates it at any point).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.encodings import SHEncoding
from nerfstudio.field_components.mlp import MLP
from nerfstudio.field_components.spatial_distortions import SpatialDistortion
from nerfstudio.fields.base_field import Field
from torch import Tensor, nn

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.fields.backend import Implementation, resolve_implementation
from jacobinerf_ns.fields.hash_grid import HashGridEncoding

# keys of the per-sample outputs
DENSITY, RGB, RGB_PREACT, COLOR_HIDDEN, SEMANTICS, FEATURES = (
    "density",
    "rgb",
    "rgb_preact",
    "color_hidden",
    "semantics",
    "features",
)


@dataclass
class HashGridParams:
    """Multiresolution hash grid (instant-NGP)."""

    num_levels: int = 16
    """Number of resolution levels."""
    features_per_level: int = 2
    """Features stored per level."""
    log2_hashmap_size: int = 19
    """log2 of the hash table size per level."""
    base_resolution: int = 16
    """Resolution of the coarsest level."""
    max_resolution: int = 2048
    """Resolution of the finest level."""

    def build(self, implementation: Implementation) -> HashGridEncoding:
        return HashGridEncoding(
            num_levels=self.num_levels,
            features_per_level=self.features_per_level,
            log2_hashmap_size=self.log2_hashmap_size,
            base_resolution=self.base_resolution,
            max_resolution=self.max_resolution,
            implementation=implementation,
        )


def normalize_positions(
    positions: Float[Tensor, "*bs 3"], aabb: Float[Tensor, "2 3"], distortion: SpatialDistortion | None = None
) -> tuple[Float[Tensor, "*bs 3"], Tensor]:
    """Map the box to [0, 1]^3 — or, with a scene contraction (unbounded captures, as nerfacto), the contracted
    space [-2, 2]^3 — and return the mask of points inside it."""
    if distortion is None:
        x = SceneBox.get_normalized_positions(positions, aabb)
    else:
        x = (distortion(positions) + 2.0) / 4.0
    inside = ((x >= 0.0) & (x <= 1.0)).all(dim=-1)
    return x.clamp(0.0, 1.0), inside


def grid_mlp(
    positions: Float[Tensor, "*bs 3"],
    aabb: Float[Tensor, "2 3"],
    encoding: nn.Module,
    mlp: nn.Module,
    distortion: SpatialDistortion | None = None,
    return_encoding: bool = False,
):
    """Hash-grid encoding + MLP at world positions (float32 out) and the mask of positions inside the box (and the
    encoding itself with ``return_encoding``)."""
    x, inside = normalize_positions(positions, aabb, distortion)
    shape = x.shape[:-1]
    enc = encoding(x.view(-1, 3))
    out = mlp(enc).view(*shape, -1).float()
    if return_encoding:
        return out, inside, enc.view(*shape, -1).float()
    return out, inside


def activate_density(raw: Float[Tensor, "*bs 1"], inside: Tensor, average_init_density: float) -> Tensor:
    """``average_init_density · exp(raw − 1)`` (truncated gradient), zero outside the box."""
    return average_init_density * trunc_exp(raw - 1.0) * inside[..., None]


class SemanticRadianceField(Field):
    """See the module docstring. ``semantic_classes = 0`` / ``feature_dim = 0`` disable those heads."""

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        grid: HashGridParams,
        geo_feat_dim: int = 15,
        hidden_dim: int = 64,
        num_layers: int = 2,
        hidden_dim_color: int = 64,
        num_layers_color: int = 3,
        use_view_dirs: bool = True,
        semantic_classes: int = 0,
        hidden_dim_semantics: int = 64,
        feature_dim: int = 0,
        hidden_dim_features: int = 64,
        average_init_density: float = 1.0,
        implementation: Implementation = "auto",
        spatial_distortion: SpatialDistortion | None = None,
    ) -> None:
        super().__init__()
        impl = resolve_implementation(implementation)
        self.register_buffer("aabb", aabb.clone().float())
        self.spatial_distortion = spatial_distortion
        """Scene contraction for unbounded captures (None: the scene lies in ``aabb``)."""
        self.geo_feat_dim = geo_feat_dim
        self.average_init_density = average_init_density
        self.use_view_dirs = use_view_dirs
        self.encoding = grid.build(impl)
        self.density_mlp = MLP(
            in_dim=self.encoding.get_out_dim(),
            num_layers=num_layers,
            layer_width=hidden_dim,
            out_dim=1 + geo_feat_dim,
            activation=nn.ReLU(),
            implementation=impl,
        )
        self.direction_encoding = SHEncoding(levels=4, implementation=impl) if use_view_dirs else None
        color_in = geo_feat_dim + (self.direction_encoding.get_out_dim() if self.direction_encoding else 0)
        layers = []
        for i in range(num_layers_color - 1):
            layers += [nn.Linear(color_in if i == 0 else hidden_dim_color, hidden_dim_color), nn.ReLU()]
        self.color_hidden = nn.Sequential(*layers)
        """Hidden layers of the colour MLP: their output is h (K = hidden_dim_color)."""
        self.color_out = nn.Linear(hidden_dim_color if layers else color_in, 3)
        """θᴰ: the last colour layer, always explicit torch."""
        self.semantic_head = None
        if semantic_classes > 0:
            self.semantic_head = nn.Sequential(
                nn.Linear(geo_feat_dim, hidden_dim_semantics),
                nn.ReLU(),
                nn.Linear(hidden_dim_semantics, semantic_classes),
            )
        self.feature_head = None
        if feature_dim > 0:
            self.feature_head = nn.Sequential(
                nn.Linear(self.encoding.get_out_dim() + geo_feat_dim, hidden_dim_features),
                nn.ReLU(),
                nn.Linear(hidden_dim_features, feature_dim),
            )
        self.implementation = impl

    def get_extra_state(self) -> dict:
        """Saved in every checkpoint: the hash-grid implementation the run was built with."""
        return {"implementation": self.implementation}

    def set_extra_state(self, state: dict) -> None:
        saved = state.get("implementation") if isinstance(state, dict) else None
        if saved is not None and saved != self.implementation:
            raise ConfigError(
                f"this checkpoint's field was trained with the {saved} hash grid, but here the model was built with "
                f"{self.implementation} (implementation 'auto' resolves per machine; tcnn needs tinycudann and "
                "CUDA): open the run where that implementation is available"
            )

    @property
    def color_dim(self) -> int:
        """K, the width of h."""
        return self.color_out.in_features

    def density_at(self, positions: Float[Tensor, "*bs 3"]) -> tuple[Tensor, Tensor]:
        """Density (*bs, 1) and geometry features (*bs, geo_feat_dim) at world positions; with a feature head the
        geometry features carry the hash-grid encoding after them (the feature head's input)."""
        h, inside, enc = grid_mlp(
            positions, self.aabb, self.encoding, self.density_mlp, self.spatial_distortion, return_encoding=True
        )
        raw_density, geo = torch.split(h, [1, self.geo_feat_dim], dim=-1)
        if self.feature_head is not None:
            geo = torch.cat([geo, enc], dim=-1)
        return activate_density(raw_density, inside, self.average_init_density), geo

    def features_at(self, positions: Float[Tensor, "*bs 3"]) -> tuple[Tensor, Tensor]:
        """Density (*bs, 1) and the (un-normalised) distilled feature (*bs, D) at world positions."""
        if self.feature_head is None:
            raise ValueError("this field has no feature head")
        density, geo = self.density_at(positions)
        return density, self.feature_head(geo)

    def density_fn(self, positions: Float[Tensor, "*bs 3"], times: Tensor | None = None) -> Tensor:
        return self.density_at(positions)[0]

    def get_density(self, ray_samples: RaySamples) -> tuple[Tensor, Tensor]:
        return self.density_at(ray_samples.frustums.get_positions())

    def get_outputs(self, ray_samples: RaySamples, density_embedding: Tensor | None = None) -> dict[str, Tensor]:  # type: ignore[override]
        assert density_embedding is not None
        geo_and_enc = density_embedding
        geo = geo_and_enc[..., : self.geo_feat_dim]
        inputs = [geo]
        if self.direction_encoding is not None:
            dirs = (ray_samples.frustums.directions + 1.0) / 2.0
            shape = dirs.shape[:-1]
            inputs.insert(0, self.direction_encoding(dirs.reshape(-1, 3)).view(*shape, -1).float())
        hidden = self.color_hidden(torch.cat(inputs, dim=-1))
        preact = self.color_out(hidden)
        out = {RGB: torch.sigmoid(preact), RGB_PREACT: preact, COLOR_HIDDEN: hidden}
        if self.semantic_head is not None:
            out[SEMANTICS] = self.semantic_head(geo)
        if self.feature_head is not None:
            out[FEATURES] = self.feature_head(geo_and_enc)
        return out

    def forward(self, ray_samples: RaySamples, compute_normals: bool = False) -> dict[str, Tensor]:  # type: ignore
        density, geo = self.get_density(ray_samples)
        out = self.get_outputs(ray_samples, density_embedding=geo)
        out[DENSITY] = density
        return out


class ProposalDensityField(nn.Module):
    """A small density-only hash-grid field used by the proposal sampler."""

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        grid: HashGridParams,
        hidden_dim: int = 16,
        average_init_density: float = 1.0,
        implementation: Implementation = "auto",
        spatial_distortion: SpatialDistortion | None = None,
    ) -> None:
        super().__init__()
        impl = resolve_implementation(implementation)
        self.register_buffer("aabb", aabb.clone().float())
        self.spatial_distortion = spatial_distortion
        self.encoding = grid.build(impl)
        self.mlp = MLP(
            in_dim=self.encoding.get_out_dim(),
            num_layers=2,
            layer_width=hidden_dim,
            out_dim=1,
            activation=nn.ReLU(),
            implementation=impl,
        )
        self.average_init_density = average_init_density

    def density_fn(self, positions: Float[Tensor, "*bs 3"], times: Tensor | None = None) -> Tensor:
        raw, inside = grid_mlp(positions, self.aabb, self.encoding, self.mlp, self.spatial_distortion)
        return activate_density(raw, inside, self.average_init_density)
