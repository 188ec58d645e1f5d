"""The factorized video encoder (official ``videoprism.encoders.FactorizedEncoder``, ViViT model-2).

Video (B, T, H, W, 3) in [0, 1] -> patches (one frame per tubelet, patch vector flattened as
(row, col, channel)) -> ``patch_projection`` -> + ``spatial_pos_emb`` -> ``spatial_encoder`` over
every frame -> ``spatial_ln`` -> regroup per patch position -> + ``temporal_pos_emb`` ->
``temporal_encoder`` -> ``temporal_ln`` -> tokens (B, T*h*w, D), time-major then row-major.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from prism_science.errors import ConfigError, VideoInputError
from prism_science.models.layers import (
    ATTENTION_IMPLEMENTATIONS,
    NORM_POLICIES,
    FeedForward,
    LayerNorm,
    VisionTransformer,
    init_weights,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoEncoderConfig:
    """Configuration of :class:`VideoEncoder` (the official ``FactorizedEncoder`` arguments).

    ``pos_emb_shape`` of the official code is ``(num_frames, image_size // patch_size,
    image_size // patch_size)``: the frame count and resolution the position embeddings were
    trained at. Other frame counts and resolutions work; the embeddings are then resized.
    """

    family: ClassVar[str] = "video_encoder"

    patch_size: int = 18
    num_frames: int = 16
    image_size: int = 288
    model_dim: int = 768
    num_spatial_layers: int = 12
    num_temporal_layers: int = 4
    num_heads: int = 12
    mlp_dim: int = 3072
    atten_logit_cap: float = 50.0
    norm_policy: str = "pre"
    attention: str = "exact"

    def __post_init__(self) -> None:
        for name in ("patch_size", "num_frames", "image_size", "model_dim", "num_heads",
                     "mlp_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config field {name!r} must be a positive int, found {value!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"config field 'image_size' ({self.image_size}) must be a multiple of "
                f"'patch_size' ({self.patch_size})"
            )
        if self.model_dim % self.num_heads:
            raise ConfigError(
                f"config field 'model_dim' ({self.model_dim}) must be divisible by "
                f"'num_heads' ({self.num_heads})"
            )
        if self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(
                f"config field 'attention' must be one of {ATTENTION_IMPLEMENTATIONS}, "
                f"found {self.attention!r}"
            )
        if self.norm_policy not in NORM_POLICIES:
            raise ConfigError(
                f"config field 'norm_policy' must be one of {NORM_POLICIES}, "
                f"found {self.norm_policy!r}"
            )

    @property
    def grid_size(self) -> int:
        """Patches per side at the trained resolution."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        """The config fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the config fields (what overrides may set)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **overrides: Any) -> VideoEncoderConfig:
        """A copy with ``overrides`` applied; unknown field names raise :class:`ConfigError`."""
        unknown = sorted(set(overrides) - set(self.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown config field(s) {unknown} for a {self.family} model; "
                f"known fields: {', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> VideoEncoderConfig:
        """Build from a dict, rejecting unknown fields with a :class:`ConfigError`."""
        return cls().replace(**fields)


def resize_pos_emb(emb: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
    """Resize a flattened position-embedding table to another grid.

    Same as the official ``jax.image.resize(..., method="bilinear")``, which antialiases when
    shrinking: ``F.interpolate(mode="bilinear", align_corners=False, antialias=True)``.

    Parameters
    ----------
    emb : torch.Tensor
        (L, D) embeddings on a grid of ``source_shape`` (1-D: (T,), 2-D: (h, w)) with
        ``prod(source_shape) == L``.
    target_shape : tuple of int
        (T',) or (h', w').

    Returns
    -------
    torch.Tensor
        (prod(target_shape), D).
    """
    length, dim = emb.shape
    if len(target_shape) == 1:
        # (1, D, 1, L): antialiased bilinear with a size-1 *width* is wrong in torch (CPU),
        # a size-1 height is fine.
        grid = emb.t().reshape(1, dim, 1, length)
        size = (1, target_shape[0])
    else:
        side = int(round(length**0.5))
        grid = emb.t().reshape(1, dim, side, side)  # row-major (h, w) grid
        size = tuple(target_shape)
    # Interpolate in float32 (bf16 interpolation is not supported everywhere).
    out = F.interpolate(grid.float(), size=size, mode="bilinear", align_corners=False,
                        antialias=True)
    return out.reshape(dim, -1).t().to(emb.dtype)


def transformer_layer_flops(tokens: int, dim: int, mlp_dim: int) -> int:
    """Forward FLOPs of one transformer layer over one sequence of ``tokens`` tokens.

    Matmuls only, a multiply-add counted as 2 FLOPs (the convention of
    :class:`torch.utils.flop_counter.FlopCounterMode` and of MFU figures): the query, key,
    value and output projections (4 x 2 x L x D x D), the attention logits and the weighted sum
    of values (2 x 2 x L x L x D), the two MLP matmuls (2 x 2 x L x D x M). Layer norms,
    softmax, the logit cap and GELU are elementwise (under 1% of the total) and not counted.
    """
    projections = 2 * tokens * 4 * dim * dim
    attention = 2 * 2 * tokens * tokens * dim
    mlp = 2 * tokens * 2 * dim * mlp_dim
    return projections + attention + mlp


def encoder_flops(config: VideoEncoderConfig, frames: int | None = None,
                  image_size: int | None = None) -> int:
    """Forward FLOPs of :class:`VideoEncoder` for one clip, counted from ``config``.

    Parameters
    ----------
    config : VideoEncoderConfig
        The architecture.
    frames : int, optional
        Frames per clip; default ``config.num_frames``.
    image_size : int, optional
        Frame side in pixels (a multiple of the patch size); default ``config.image_size``.

    Returns
    -------
    int
        FLOPs (multiply-add = 2): patch projection, ``frames`` spatial passes over h*w tokens,
        h*w temporal passes over ``frames`` tokens (see :func:`transformer_layer_flops`).
        Divide by ``frames`` for FLOPs per frame (about 58 G for the official base model at
        16 x 288 x 288).
    """
    t = int(frames or config.num_frames)
    side = int(image_size or config.image_size) // config.patch_size
    n = side * side
    d, m, p = config.model_dim, config.mlp_dim, config.patch_size
    patch = 2 * t * n * (p * p * 3) * d
    spatial = t * config.num_spatial_layers * transformer_layer_flops(n, d, m)
    temporal = n * config.num_temporal_layers * transformer_layer_flops(t, d, m)
    return patch + spatial + temporal


def check_video(video: Any, patch_size: int, name: str = "video") -> None:
    """Raise :class:`VideoInputError` unless ``video`` is a (B, T, H, W, 3) float tensor in [0, 1].

    Parameters
    ----------
    video : Any
        The model input to check.
    patch_size : int
        H and W must be multiples of it.
    name : str
        How the error messages call the input.
    """
    if not isinstance(video, torch.Tensor):
        raise VideoInputError(
            f"{name} must be a torch.Tensor of shape (B, T, H, W, 3), found {type(video).__name__};"
            " convert frames with torch.from_numpy(frames).float() / 255"
        )
    if video.ndim != 5:
        raise VideoInputError(
            f"{name} must have 5 dims (B, T, H, W, 3), found shape {tuple(video.shape)}; add a "
            "batch axis with video[None] for a single clip"
        )
    if video.shape[-1] != 3:
        raise VideoInputError(
            f"{name} must have 3 RGB channels last (B, T, H, W, 3), found shape "
            f"{tuple(video.shape)}; move channels last with video.permute(0, 1, 3, 4, 2) or "
            "convert grayscale frames to RGB"
        )
    if not video.is_floating_point():
        raise VideoInputError(
            f"{name} must be a float tensor with values in [0, 1], found dtype {video.dtype}; "
            "convert uint8 frames with video.float() / 255"
        )
    h, w = video.shape[2:4]
    if h % patch_size or w % patch_size:
        raise VideoInputError(
            f"{name} frames must be multiples of the patch size {patch_size}, found {h}x{w}; "
            "resize or crop the frames"
        )
    # The value-range check reads the data once (skipped while torch.compile traces).
    if video.numel() and not video.is_meta and not torch.compiler.is_compiling():
        lo_t, hi_t = torch.aminmax(video.detach())
        lo, hi = float(lo_t), float(hi_t)
        if lo < -1e-3 or hi > 1.0 + 1e-3 or lo != lo or hi != hi:
            raise VideoInputError(
                f"{name} values must lie in [0, 1], found min {lo:.4g} max {hi:.4g}; divide "
                "uint8 frames by 255 and do not apply mean/std normalisation"
            )


def check_frame_paddings(frame_paddings: torch.Tensor | None, batch: int, frames: int) -> None:
    """Raise :class:`VideoInputError` unless ``frame_paddings`` is None or (B, T)."""
    if frame_paddings is None:
        return
    if not isinstance(frame_paddings, torch.Tensor) or tuple(frame_paddings.shape) != (
        batch,
        frames,
    ):
        found = (
            tuple(frame_paddings.shape)
            if isinstance(frame_paddings, torch.Tensor)
            else type(frame_paddings).__name__
        )
        raise VideoInputError(
            f"frame_paddings must be a tensor of shape (B, T) = ({batch}, {frames}) with 1.0 "
            f"marking a padded frame, found {found}"
        )


class _Embedding(nn.Module):
    """Holds an ``emb_var`` table (official embedding layers)."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.emb_var = nn.Parameter(torch.zeros(length, dim))


class ClipGeometry:
    """The clip geometry every video model exposes (ARCHITECTURE.md), read from ``config``.

    Mixed into the encoder, the classifier and the video-text model, whose configs all carry
    ``num_frames``, ``image_size``, ``patch_size`` and ``model_dim``.
    """

    config: VideoEncoderConfig

    @property
    def num_frames(self) -> int:
        """Frames per clip the model was trained on."""
        return self.config.num_frames

    @property
    def image_size(self) -> int:
        """Frame side length (pixels) the model was trained on."""
        return self.config.image_size

    @property
    def patch_size(self) -> int:
        """Patch side length in pixels."""
        return self.config.patch_size

    @property
    def model_dim(self) -> int:
        """Token width D."""
        return self.config.model_dim


class VideoEncoder(ClipGeometry, nn.Module):
    """The factorized space-time video encoder.

    Parameters
    ----------
    config : VideoEncoderConfig
        Architecture.
    name : str
        Registered name or a free label (stored in ``model.name``).

    Attributes
    ----------
    config, name, weights_sha256 : see ARCHITECTURE.md (weights_sha256 is None for random init).
    """

    def __init__(self, config: VideoEncoderConfig, name: str = "custom") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.weights_sha256: str | None = None
        c = config
        p = c.patch_size
        self.patch_projection = FeedForward(p * p * 3, c.model_dim)
        self.spatial_pos_emb = _Embedding(c.grid_size * c.grid_size, c.model_dim)
        self.spatial_encoder = VisionTransformer(
            c.num_spatial_layers, c.model_dim, c.num_heads, c.mlp_dim, c.atten_logit_cap,
            c.norm_policy, c.attention,
        )
        self.spatial_ln = LayerNorm(c.model_dim)
        self.temporal_pos_emb = _Embedding(c.num_frames, c.model_dim)
        self.temporal_encoder = VisionTransformer(
            c.num_temporal_layers, c.model_dim, c.num_heads, c.mlp_dim, c.atten_logit_cap,
            c.norm_policy, c.attention,
        )
        self.temporal_ln = LayerNorm(c.model_dim)
        # None: convolution patch embedding on CUDA inference only (use_conv_patch_embedding).
        self.conv_patch_embedding: bool | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation (official-like; see :func:`layers.init_weights`)."""
        init_weights(self)
        # Official TrainablePositionalEmbedding uses lecun_normal over a (L, D) table.
        for emb in (self.spatial_pos_emb.emb_var, self.temporal_pos_emb.emb_var):
            nn.init.trunc_normal_(emb, std=0.02, a=-0.04, b=0.04)

    # -- forward ---------------------------------------------------------------------------
    def forward(
        self, video: torch.Tensor, frame_paddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode a batch of clips into tokens.

        Parameters
        ----------
        video : torch.Tensor
            (B, T, H, W, 3) float in [0, 1]; H and W multiples of ``patch_size``.
        frame_paddings : torch.Tensor, optional
            (B, T) float, 1.0 marks a padded frame.

        Returns
        -------
        torch.Tensor
            (B, T*h*w, D) tokens, time-major then row-major patch grid.
        """
        return self._encode(video, frame_paddings, None, return_layers=False)["tokens"]

    def forward_intermediates(
        self,
        video: torch.Tensor,
        frame_paddings: torch.Tensor | None = None,
        keep_spatial: torch.Tensor | None = None,
        return_layers: bool = True,
    ) -> dict[str, Any]:
        """Encode and return the intermediates feature extraction and training need.

        Parameters
        ----------
        video : torch.Tensor
            (B, T, H, W, 3) float in [0, 1].
        frame_paddings : torch.Tensor, optional
            (B, T), 1.0 = padded frame.
        keep_spatial : torch.Tensor, optional
            (B, n_keep) int64 indices of the patch positions to keep (tube masking: the same
            positions in every frame). Position embeddings are added before dropping patches.
        return_layers : bool
            Also return each layer's output (``spatial_layers``, ``temporal_layers``).

        Returns
        -------
        dict
            ``tokens`` (B, T*n, D); ``spatial_features`` (B, T*n, D) after ``spatial_ln``;
            ``spatial_layers`` / ``temporal_layers``: lists of (B, T*n, D), one per layer;
            ``grid`` (T, h, w) of the full patch grid. ``n`` = h*w, or n_keep when masking.
        """
        return self._encode(video, frame_paddings, keep_spatial, return_layers=return_layers)

    def _patchify(self, video: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        # Patch vector flattened (row, col, channel), as the official `_image_to_patch`.
        return rearrange(video, "b t (h p) (w q) c -> (b t) (h w) (p q c)", p=p, q=p)

    def _conv_patch_embedding(self, video: torch.Tensor) -> torch.Tensor:
        """The patch projection as a strided convolution over channels-last frames.

        The same numbers as :meth:`_patchify` + ``patch_projection`` (a kernel = stride = p
        convolution is that matmul), without materialising the (B*T, h*w, p*p*3) patch copy:
        (B, T, H, W, C) viewed as (B*T, C, H, W) *is* channels-last memory, which cuDNN reads
        directly. Returns (B*T, h*w, D).
        """
        p = self.config.patch_size
        linear = self.patch_projection.linear
        b, t, height, width, c = video.shape
        frames = video.reshape(b * t, height, width, c).permute(0, 3, 1, 2)  # (BT, C, H, W)
        # Linear weight (D, p*p*C) flattened (row, col, channel) -> conv weight (D, C, p, p).
        weight = linear.weight.view(-1, p, p, c).permute(0, 3, 1, 2)
        weight = weight.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(frames, weight, linear.bias, stride=p)  # (BT, D, h, w)
        return rearrange(out, "n d h w -> n (h w) d")

    def use_conv_patch_embedding(self, video: torch.Tensor) -> bool:
        """Whether :meth:`embed_patches` takes the convolution path for ``video``.

        ``self.conv_patch_embedding`` decides: True / False, or None (the default) for "on
        CUDA float inference only" -- where cuDNN's channels-last convolution saves the patch
        copy; on CPU the matmul over patches is as fast (and oneDNN-routed when chosen).
        """
        choice = getattr(self, "conv_patch_embedding", None)
        if choice is None:
            return video.device.type == "cuda" and not torch.is_grad_enabled()
        return bool(choice)

    def embed_patches(self, video: torch.Tensor) -> torch.Tensor:
        """Patch projection plus (resized) spatial position embeddings: (B*T, h*w, D)."""
        _, _, height, width, _ = video.shape
        p = self.config.patch_size
        video = video.to(self.patch_projection.linear.weight)
        if self.use_conv_patch_embedding(video):
            x = self._conv_patch_embedding(video)
        else:
            x = self.patch_projection(self._patchify(video))
        pos = self.spatial_pos_emb.emb_var
        grid = (height // p, width // p)
        if grid != (self.config.grid_size, self.config.grid_size):
            pos = resize_pos_emb(pos, grid)
        return x + pos.to(x.dtype)

    def temporal_pos(self, frames: int) -> torch.Tensor:
        """Temporal position embeddings for ``frames`` frames (resized when needed): (T, D)."""
        pos = self.temporal_pos_emb.emb_var
        if frames != self.config.num_frames:
            pos = resize_pos_emb(pos, (frames,))
        return pos

    def _encode(
        self,
        video: torch.Tensor,
        frame_paddings: torch.Tensor | None,
        keep_spatial: torch.Tensor | None,
        return_layers: bool,
    ) -> dict[str, Any]:
        check_video(video, self.config.patch_size)
        b, t, height, width, _ = video.shape
        check_frame_paddings(frame_paddings, b, t)
        p = self.config.patch_size
        x = self.embed_patches(video)  # (B*T, N, D)
        if keep_spatial is not None:
            x = self._keep(x, keep_spatial, b, t)
        n = x.shape[1]

        spatial_paddings = temporal_paddings = None
        if frame_paddings is not None:
            fp = frame_paddings.to(device=x.device, dtype=x.dtype)
            spatial_paddings = fp.reshape(b * t, 1).expand(b * t, n)  # (B*T, N)
            temporal_paddings = fp.repeat_interleave(n, dim=0)  # (B*N, T)

        x, spatial_layers = self.spatial_encoder(x, spatial_paddings, return_layers)
        x = self.spatial_ln(x)
        spatial_features = x
        x = rearrange(x, "(b t) n d -> (b n) t d", t=t)
        x = x + self.temporal_pos(t).to(x.dtype)
        x, temporal_layers = self.temporal_encoder(x, temporal_paddings, return_layers)
        x = self.temporal_ln(x)
        tokens = rearrange(x, "(b n) t d -> b (t n) d", b=b)
        return {
            "tokens": tokens,
            "spatial_features": rearrange(spatial_features, "(b t) n d -> b (t n) d", t=t),
            "spatial_layers": [rearrange(y, "(b t) n d -> b (t n) d", t=t)
                               for y in spatial_layers],
            "temporal_layers": [rearrange(y, "(b n) t d -> b (t n) d", b=b)
                                for y in temporal_layers],
            "grid": (t, height // p, width // p),
        }

    @staticmethod
    def _keep(x: torch.Tensor, keep_spatial: torch.Tensor, b: int, t: int) -> torch.Tensor:
        n = x.shape[1]
        if (
            not isinstance(keep_spatial, torch.Tensor)
            or keep_spatial.ndim != 2
            or keep_spatial.shape[0] != b
            or keep_spatial.dtype not in (torch.int64, torch.int32)
        ):
            found = (tuple(keep_spatial.shape), keep_spatial.dtype) if isinstance(
                keep_spatial, torch.Tensor) else type(keep_spatial).__name__
            raise VideoInputError(
                f"keep_spatial must be an int64 tensor of shape (B={b}, n_keep), found {found}"
            )
        if keep_spatial.numel() and (int(keep_spatial.min()) < 0 or int(keep_spatial.max()) >= n):
            raise VideoInputError(
                f"keep_spatial indices must lie in [0, {n}) (patches per frame), found "
                f"[{int(keep_spatial.min())}, {int(keep_spatial.max())}]"
            )
        index = keep_spatial.to(x.device).long().repeat_interleave(t, dim=0)  # (B*T, K)
        return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))
