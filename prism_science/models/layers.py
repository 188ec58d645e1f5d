"""Shared layers of the VideoPrism model family.

Module and parameter names follow the official Flax code (google-deepmind/videoprism,
``videoprism/layers.py``) so that converting an official checkpoint is a key mapping: a Flax path
``self_attention/query/w`` becomes our ``self_attention.query.weight`` (reshaped to torch's
``nn.Linear`` layout), ``x_layers/...`` with a stacked leading axis becomes ``x_layers.<i>...``.

Two attention implementations share the same parameters:

* ``"exact"``: the official computation -- logits soft-capped as ``cap * tanh(logits / cap)``
  before masking, softmax in float32, masked logits replaced by a large negative number.
* ``"fast"``: :func:`torch.nn.functional.scaled_dot_product_attention`, which cannot express the
  soft cap (the cap is skipped; with cap 50 the logits rarely come close to it, see docs/models.md
  for the measured deviation).
* ``"flex"``: FlexAttention (``torch.nn.attention.flex_attention``, compiled) with the cap and the
  mask as a score modifier: the exact semantics in a fused kernel. The first call per input shape
  compiles (tens of seconds on a small CPU); worth it for long runs over same-shaped clips.

Of the fused paths only ``flex`` is exact for a capped model (``fast`` is exact only without a
cap). :func:`choose_attention` picks per device -- on CUDA ``fast`` for uncapped layers (SDPA's
flash / memory-efficient kernels), ``flex`` for capped ones where Triton is installed, else
``exact``; on CPU the config's choice -- and :func:`set_attention` applies it to a model
(``load_encoder`` does so on CUDA). An automatically chosen ``flex`` that fails to compile on the
device falls back to ``exact`` once, with a warning.

Dense layers run through torch's default CPU matmul (MKL on x86 builds) or, after
:func:`set_matmul_backend`, through oneDNN with prepacked weights (and the GELU fused into the
first MLP matmul) -- the same numbers within 1e-5. Which is faster depends on the CPU, so
:func:`choose_matmul_backend` measures both on the model's own shapes (docs/models.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prism_science.errors import ConfigError

ATTENTION_IMPLEMENTATIONS = ("exact", "fast", "flex")
NORM_POLICIES = ("pre", "primer_hybrid", "post", "post_skip")
MATMUL_BACKENDS = ("auto", "default", "onednn")
"""``default``: torch's own CPU matmul (MKL); ``onednn``: oneDNN with prepacked weights;
``auto``: whichever :func:`choose_matmul_backend` measures faster on this CPU."""

logger = logging.getLogger(__name__)

# Copied from the official `_get_large_negative_number`: masked logits become -0.7 * max.
_LARGE_NEGATIVE = -0.7 * float(torch.finfo(torch.float32).max)
_COMPILED_FLEX: Callable[..., torch.Tensor] | None = None


def _flex_attention() -> Callable[..., torch.Tensor]:
    """FlexAttention compiled once per process (eager FlexAttention is a slow reference)."""
    global _COMPILED_FLEX
    if _COMPILED_FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
    return _COMPILED_FLEX


class LayerNorm(nn.Module):
    """Layer normalisation whose ``scale`` parameter is stored as gain - 1 (official layout).

    Parameters
    ----------
    dim : int
        Size of the normalised last axis.
    eps : float
        Added to the variance (official default 1e-6).
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        # Official LayerNorm computes `normed * (1 + scale) + bias`; scale initialised to 0.
        self.scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (..., dim) over its last axis; same shape and dtype out."""
        return F.layer_norm(x, (x.shape[-1],), 1.0 + self.scale, self.bias, self.eps)


class PerDimScale(nn.Module):
    """Learned per-dimension query scale: ``1.442695041 / sqrt(dim) * softplus(per_dim_scale)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.per_dim_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale ``x`` (..., dim) per dimension."""
        # 1/softplus(0) = 1.442695041, hard-coded like the official PerDimScale.
        scale = 1.442695041 / math.sqrt(x.shape[-1]) * F.softplus(self.per_dim_scale)
        return x * scale.to(x.dtype)


class FeedForward(nn.Module):
    """A dense layer (official ``FeedForward``: a ``linear`` sub-module plus an activation)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.activation = activation
        self.onednn = False  # set by set_matmul_backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x`` (..., in_dim) to (..., out_dim)."""
        if self.onednn and _onednn_applies(x):
            # The activation runs inside the oneDNN matmul when oneDNN has it (GELU, ReLU).
            fused = _ONEDNN_ACTIVATIONS.get(self.activation)
            x = _onednn_linear(self, x, self.linear.weight, self.linear.bias, fused or "none")
            if fused or self.activation is None:
                return x
            return self.activation(x)
        x = self.linear(x)
        return self.activation(x) if self.activation is not None else x


class DotProductAttention(nn.Module):
    """Multi-head dot-product attention with the official projections ``query/key/value/post``.

    Parameters
    ----------
    dim : int
        Input (and output) width.
    num_heads : int
        Number of heads.
    dim_per_head : int, optional
        Width of each head; default ``hidden_dim // num_heads``.
    hidden_dim : int, optional
        Used only to derive ``dim_per_head``; default ``dim``.
    atten_logit_cap : float
        Soft cap of the logits (``<= 0`` disables it).
    per_dim_scale : bool
        Scale queries with a learned :class:`PerDimScale` (MAP pooler) instead of
        ``1 / sqrt(dim_per_head)``.
    implementation : {"exact", "fast", "flex"}
        See the module docstring.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        dim_per_head: int | None = None,
        hidden_dim: int | None = None,
        atten_logit_cap: float = 0.0,
        per_dim_scale: bool = False,
        implementation: str = "exact",
    ) -> None:
        super().__init__()
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attention implementation {implementation!r} is not one of "
                f"{ATTENTION_IMPLEMENTATIONS}; set the config field 'attention' to one of them"
            )
        hidden_dim = hidden_dim or dim
        if dim_per_head is None:
            if hidden_dim % num_heads:
                raise ValueError(
                    f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}; "
                    "choose a model_dim that is a multiple of num_heads"
                )
            dim_per_head = hidden_dim // num_heads
        self.num_heads = num_heads
        self.dim_per_head = dim_per_head
        self.atten_logit_cap = float(atten_logit_cap)
        self.implementation = implementation
        inner = num_heads * dim_per_head
        self.query = nn.Linear(dim, inner)
        self.key = nn.Linear(dim, inner)
        self.value = nn.Linear(dim, inner)
        self.post = nn.Linear(inner, dim)
        self.per_dim_scale = PerDimScale(dim_per_head) if per_dim_scale else None
        self.onednn = False  # set by set_matmul_backend
        self.auto_flex = False  # set by set_attention("auto"): fall back to exact on failure

    def _fused_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated query/key/value weights and biases ((3*N*H, D), (3*N*H,)).

        Without autograd they are cached until a parameter changes (its version or storage),
        so inference does not re-concatenate them on every call.
        """
        params = (self.query.weight, self.key.weight, self.value.weight,
                  self.query.bias, self.key.bias, self.value.bias)
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return torch.cat(params[:3]), torch.cat(params[3:])
        stamp = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        cached = getattr(self, "_qkv_cache", None)
        if cached is None or cached[0] != stamp:
            cached = (stamp, torch.cat(params[:3]), torch.cat(params[3:]))
            self._qkv_cache = cached
        return cached[1], cached[2]

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # (B, L, N*H) -> (B, N, L, H)
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.dim_per_head).transpose(1, 2)

    def _exact(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        scale: float,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Official attention: scaled logits, soft cap, mask, float32 softmax. (B, N, T, H) out."""
        cap = self.atten_logit_cap
        # The 1/sqrt(head_dim) and 1/cap factors are applied to the logits in the matmul
        # (the official code scales q, then divides the logits by cap: same up to rounding).
        alpha = scale / cap if cap > 0.0 else scale
        b, n, t, h = q.shape
        logits = torch.baddbmm(
            q.new_empty(()).expand(b * n, t, k.shape[2]),
            q.reshape(b * n, t, h),
            k.reshape(b * n, -1, h).transpose(1, 2),
            beta=0.0,
            alpha=alpha,
        ).view(b, n, t, -1)
        if cap > 0.0:
            if torch.is_grad_enabled():
                logits = torch.tanh(logits) * cap
            else:  # in place: saves two passes over the (B, N, T, S) logits at inference
                logits = logits.tanh_().mul_(cap)
        # Attention softmax is always carried out in float32 (official comment and code).
        logits = logits.float()
        if mask is not None:
            logits = logits.masked_fill(mask, _LARGE_NEGATIVE)
        probs = torch.softmax(logits, dim=-1).to(v.dtype)
        return torch.matmul(probs, v)

    def _flex(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        scale: float,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """The exact semantics (cap before masking) as a FlexAttention score modifier."""
        cap = self.atten_logit_cap
        full = None
        if mask is not None:
            full = mask.expand(q.shape[0], 1, q.shape[2], k.shape[2])[:, 0]  # (B, T, S)

        def score_mod(score, b, h, q_idx, kv_idx):
            if cap > 0.0:
                score = cap * torch.tanh(score / cap)
            if full is not None:
                score = torch.where(full[b, q_idx, kv_idx], _LARGE_NEGATIVE, score)
            return score

        return _flex_attention()(q, k, v, score_mod=score_mod, scale=scale)

    def _auto_flex(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                   mask: torch.Tensor | None) -> torch.Tensor:
        """``flex`` chosen by :func:`set_attention` ("auto"): on a compile failure (no Triton
        for this GPU, an unsupported head size) fall back to ``exact`` for good."""
        try:
            return self._flex(q, k, v, scale, mask)
        except Exception as exc:  # noqa: BLE001 - any compiler failure; exact is always valid
            logger.warning("FlexAttention failed on %s (%s: %s); using the exact attention path",
                           q.device, type(exc).__name__, str(exc).splitlines()[0][:200])
            self.implementation = "exact"
            self.auto_flex = False
            return self._exact(q, k, v, scale, mask)

    def forward(
        self,
        query_vec: torch.Tensor,
        kv_vec: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``query_vec`` (B, T, D) to ``kv_vec`` (B, S, D).

        Parameters
        ----------
        query_vec : torch.Tensor
            (B, T, D) float.
        kv_vec : torch.Tensor
            (B, S, D) float, used for both keys and values.
        mask : torch.Tensor, optional
            bool, broadcastable to (B, 1, T, S); ``True`` marks a pair that must not attend.

        Returns
        -------
        torch.Tensor
            (B, T, D), same dtype as the input.
        """
        if query_vec is kv_vec:
            # Self-attention: one fused projection over the concatenated weights.
            weight, bias = self._fused_qkv()
            b, length, _ = query_vec.shape
            if self.onednn and _onednn_applies(query_vec):
                qkv = _onednn_linear(self, query_vec, weight, bias, "none", slot="qkv")
            else:
                qkv = F.linear(query_vec, weight, bias)
            qkv = qkv.view(b, length, 3, self.num_heads, self.dim_per_head).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)  # each (B, N, L, H)
        else:
            q = self._split(self.query(query_vec))
            k = self._split(self.key(kv_vec))
            v = self._split(self.value(kv_vec))
        if self.per_dim_scale is not None:
            q = self.per_dim_scale(q)
            scale = 1.0
        else:
            scale = self.dim_per_head**-0.5
        if self.implementation == "fast":
            attn_mask = None
            if mask is not None:
                # An additive mask of large finite negatives, like the exact path: a row whose
                # keys are all masked (a padded frame) then averages all values, as officially.
                attn_mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(
                    mask, 0.7 * torch.finfo(q.dtype).min)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
        elif self.implementation == "flex" and self.auto_flex:
            out = self._auto_flex(q, k, v, scale, mask)
        elif self.implementation == "flex":
            out = self._flex(q, k, v, scale, mask)
        else:
            out = self._exact(q, k, v, scale, mask)
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.dim_per_head)
        if self.onednn and _onednn_applies(out):
            return _onednn_linear(self, out, self.post.weight, self.post.bias, "none",
                                  slot="post")
        return self.post(out)


class TransformerFeedForward(nn.Module):
    """The MLP half of a transformer layer (official ``TransformerFeedForward``)."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        activation: Callable[[torch.Tensor], torch.Tensor],
        norm_policy: str = "pre",
    ) -> None:
        super().__init__()
        self.norm_policy = norm_policy
        if norm_policy == "primer_hybrid":
            self.pre_layer_norm = LayerNorm(dim)
            self.post_layer_norm = LayerNorm(dim)
        else:
            self.layer_norm = LayerNorm(dim)
        self.ffn_layer1 = FeedForward(dim, hidden_dim, activation)
        self.ffn_layer2 = FeedForward(hidden_dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block to ``x`` (B, L, D); ``keep`` (B, L, 1) is 1 - paddings, or None."""
        residual = x
        if self.norm_policy == "primer_hybrid":
            x = self.pre_layer_norm(x)
        elif self.norm_policy == "pre":
            x = self.layer_norm(x)
        h = self.ffn_layer1(x)
        if keep is not None:
            h = h * keep
        out = self.ffn_layer2(h)
        if keep is not None:
            out = out * keep
        if self.norm_policy == "primer_hybrid":
            out = self.post_layer_norm(out)
        elif self.norm_policy == "post":
            out = self.layer_norm(out)
        out = residual + out
        if self.norm_policy == "post_skip":
            out = self.layer_norm(out)
        return out


class Transformer(nn.Module):
    """One pre-norm transformer layer (official ``Transformer``): self-attention, then MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: Callable[[torch.Tensor], torch.Tensor],
        atten_logit_cap: float = 0.0,
        norm_policy: str = "pre",
        implementation: str = "exact",
    ) -> None:
        super().__init__()
        if norm_policy not in NORM_POLICIES:
            raise ValueError(f"norm_policy {norm_policy!r} is not one of {NORM_POLICIES}")
        self.norm_policy = norm_policy
        if norm_policy == "primer_hybrid":
            self.pre_layer_norm = LayerNorm(dim)
            self.post_layer_norm = LayerNorm(dim)
        else:
            self.layer_norm = LayerNorm(dim)
        self.self_attention = DotProductAttention(
            dim,
            num_heads,
            atten_logit_cap=atten_logit_cap,
            implementation=implementation,
        )
        self.ff_layer = TransformerFeedForward(dim, mlp_dim, activation, norm_policy)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply the layer to ``x`` (B, L, D) with an attention ``mask`` and FFN ``keep``."""
        if self.norm_policy == "primer_hybrid":
            normed = self.pre_layer_norm(x)
        elif self.norm_policy == "pre":
            normed = self.layer_norm(x)
        else:
            normed = x
        out = self.self_attention(normed, normed, mask)
        if self.norm_policy == "primer_hybrid":
            out = self.post_layer_norm(out)
        elif self.norm_policy == "post":
            out = self.layer_norm(out)
        out = out + x
        if self.norm_policy == "post_skip":
            out = self.layer_norm(out)
        return self.ff_layer(out, keep)


def attention_mask(
    paddings: torch.Tensor | None, length: int, causal: bool = False
) -> torch.Tensor | None:
    """Build the boolean attention mask of the official ``compute_attention_masks_for_fprop``.

    Parameters
    ----------
    paddings : torch.Tensor or None
        (B, L) float or bool, 1 marks a padded token.
    length : int
        Sequence length L.
    causal : bool
        Also forbid attending to later positions.

    Returns
    -------
    torch.Tensor or None
        bool (B|1, 1, 1|L, L), ``True`` = masked; None when nothing is masked.
    """
    mask = None
    if paddings is not None:
        key_mask = (paddings > 0.5)[:, None, None, :]  # (B, 1, 1, L)
        mask = key_mask
    if causal:
        idx = torch.arange(length, device=paddings.device if paddings is not None else None)
        causal_mask = (idx[:, None] < idx[None, :])[None, None]  # (1, 1, L, L)
        # Official `_merge_masks` expands the padding mask to 2-D (query rows too).
        mask = causal_mask if mask is None else mask | mask.transpose(-1, -2) | causal_mask
    return mask


class StackedTransformer(nn.Module):
    """Stacked :class:`Transformer` layers, ``x_layers.<i>`` (official ``StackedTransformer``)."""

    def __init__(
        self,
        num_layers: int,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: Callable[[torch.Tensor], torch.Tensor],
        atten_logit_cap: float = 0.0,
        norm_policy: str = "pre",
        causal: bool = False,
        implementation: str = "exact",
    ) -> None:
        super().__init__()
        self.causal = causal
        self.x_layers = nn.ModuleList(
            Transformer(dim, num_heads, mlp_dim, activation, atten_logit_cap, norm_policy,
                        implementation)
            for _ in range(num_layers)
        )

    def forward(
        self,
        x: torch.Tensor,
        paddings: torch.Tensor | None = None,
        return_layers: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the stack over ``x`` (B, L, D); ``paddings`` (B, L), 1 = padded.

        Returns the output (B, L, D) and, when ``return_layers``, every layer's output.
        """
        mask = attention_mask(paddings, x.shape[1], self.causal)
        keep = None
        if paddings is not None:
            keep = (1.0 - paddings.to(x.dtype))[..., None]
        layers: list[torch.Tensor] = []
        for layer in self.x_layers:
            x = layer(x, mask, keep)
            if return_layers:
                layers.append(x)
        return x, layers


class VisionTransformer(nn.Module):
    """Official ``VisionTransformer`` wrapper: a GELU ``transformers_stack``, no causal mask."""

    def __init__(
        self,
        num_layers: int,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        atten_logit_cap: float = 0.0,
        norm_policy: str = "pre",
        implementation: str = "exact",
    ) -> None:
        super().__init__()
        self.transformers_stack = StackedTransformer(
            num_layers, dim, num_heads, mlp_dim, gelu, atten_logit_cap, norm_policy,
            causal=False, implementation=implementation,
        )

    def forward(
        self,
        x: torch.Tensor,
        paddings: torch.Tensor | None = None,
        return_layers: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """See :meth:`StackedTransformer.forward`."""
        return self.transformers_stack(x, paddings, return_layers)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU, as the official ``functools.partial(jax.nn.gelu, approximate=False)``."""
    return F.gelu(x)


def relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU (the text tower's activation)."""
    return F.relu(x)


# Activations oneDNN computes inside its matmul (exact erf GELU, as `gelu` above).
_ONEDNN_ACTIVATIONS: dict[Callable[[torch.Tensor], torch.Tensor] | None, str] = {
    gelu: "gelu", relu: "relu"}


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Official ``_l2_normalize``: ``x / sqrt(sum(x**2) + eps)`` over the last axis."""
    return x / torch.sqrt(torch.sum(x * x, dim=-1, keepdim=True) + eps)


# -- the oneDNN matmul path ---------------------------------------------------------------------
def onednn_available() -> bool:
    """Whether this torch build has the oneDNN prepacked linear (x86 builds with mkldnn)."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(
        torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn,
                                                            "_reorder_linear_weight")


def _onednn_applies(x: torch.Tensor) -> bool:
    """oneDNN serves float32 CPU inference only; autograd, autocast and other dtypes and
    devices take the default path."""
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling())


def _onednn_linear(owner: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   activation: str, slot: str = "linear") -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (then ``activation``) through oneDNN with a prepacked weight.

    The packed weight is cached on ``owner`` until the weight changes (storage or version), so
    packing happens once per layer, not per call.
    """
    # Inference tensors (the fused QKV weight cached under inference_mode) have no version.
    version = -1 if weight.is_inference() else weight._version
    stamp = (id(weight), weight.data_ptr(), version, tuple(weight.shape))
    cache: dict[str, Any] = owner.__dict__.setdefault("_onednn_cache", {})
    entry = cache.get(slot)
    if entry is None or entry[0] != stamp:
        rows = max(1, x.numel() // x.shape[-1])  # a layout hint; other row counts work too
        entry = (stamp, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows))
        cache[slot] = entry
    algorithm = "none" if activation == "gelu" else ""
    return torch.ops.mkldnn._linear_pointwise(x, entry[1], bias, activation, [], algorithm)


def set_matmul_backend(model: nn.Module, backend: str) -> str:
    """Route the dense layers of ``model`` through ``backend`` for float32 CPU inference.

    Parameters
    ----------
    model : nn.Module
        Any model of this package (its :class:`FeedForward` and :class:`DotProductAttention`
        layers are switched; other layers keep torch's default).
    backend : {"default", "onednn"}
        ``"onednn"`` falls back to ``"default"`` (with a log line) where this torch has no
        oneDNN.

    Returns
    -------
    str
        The backend now in use; also stored as ``model.matmul_backend``.
    """
    if backend not in MATMUL_BACKENDS[1:]:
        raise ConfigError(f"matmul backend {backend!r} is not one of {MATMUL_BACKENDS[1:]} "
                          "(measure with choose_matmul_backend for 'auto')")
    if backend == "onednn" and not onednn_available():
        logger.info("this torch build has no oneDNN linear: using torch's default matmul")
        backend = "default"
    for module in model.modules():
        if isinstance(module, FeedForward | DotProductAttention):
            module.onednn = backend == "onednn"
            module.__dict__.pop("_onednn_cache", None)
    model.matmul_backend = backend
    return backend


def choose_matmul_backend(model: nn.Module, rows: int, rounds: int = 3,
                          margin: float = 0.05) -> tuple[str, dict[str, float]]:
    """Measure torch's default matmul against oneDNN on ``model``'s own MLP, pick the faster.

    Times one transformer MLP block (matmul, GELU, matmul) of the model on ``rows`` tokens
    both ways at the current torch thread count, in interleaved rounds, best wall time of each
    (a shared machine's load moves from second to second; process CPU time over-counts
    multi-threaded calls on some virtual machines). oneDNN is chosen only when at least
    ``margin`` faster. Costs a few tenths of a second for a base-size model.

    Parameters
    ----------
    model : nn.Module
        A model of this package (float32 weights on CPU).
    rows : int
        Tokens per call (batch x frames x patches), as inference will run.
    rounds : int
        Interleaved timing rounds.
    margin : float
        Fraction by which oneDNN must win.

    Returns
    -------
    (str, dict)
        ``"default"`` or ``"onednn"``, and the best wall seconds of each.
    """
    block = next((m for m in model.modules() if isinstance(m, TransformerFeedForward)), None)
    weight = next(model.parameters(), None)
    if (block is None or weight is None or weight.device.type != "cpu"
            or weight.dtype != torch.float32 or not onednn_available()):
        return "default", {}
    dim = block.ffn_layer1.linear.in_features
    rows = max(1, min(int(rows), 4096))  # enough to time the kernels, bounded for big batches
    x = torch.randn(rows, dim, generator=torch.Generator().manual_seed(0))
    before = block.ffn_layer1.onednn, block.ffn_layer2.onednn
    best = {"default": float("inf"), "onednn": float("inf")}
    try:
        with torch.inference_mode():
            for round_ in range(rounds + 1):  # round 0 warms up (and packs the weights)
                for name in best:
                    block.ffn_layer1.onednn = block.ffn_layer2.onednn = name == "onednn"
                    t0 = time.perf_counter()
                    block.ffn_layer2(block.ffn_layer1(x))
                    if round_:
                        best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        block.ffn_layer1.onednn, block.ffn_layer2.onednn = before
    choice = "onednn" if best["onednn"] < (1.0 - margin) * best["default"] else "default"
    logger.info("matmul backend %s (MLP of %d tokens: default %.1f ms, oneDNN %.1f ms)",
                choice, rows, 1e3 * best["default"], 1e3 * best["onednn"])
    return choice, best


# -- attention per device -----------------------------------------------------------------------
def flex_available(device: str | torch.device) -> bool:
    """Whether compiled FlexAttention can run on ``device``: the torch API, plus Triton on CUDA
    (the CPU path compiles with the C++ backend)."""
    import importlib.util

    if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
        return False
    if torch.device(device).type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return True


def choose_attention(atten_logit_cap: float, device: str | torch.device,
                     configured: str = "exact") -> str:
    """The attention implementation that computes ``configured``'s semantics best on ``device``.

    Parameters
    ----------
    atten_logit_cap : float
        The layer's soft cap (``<= 0``: none).
    device : str or torch.device
        Where the model runs.
    configured : {"exact", "fast", "flex"}
        The config's choice. ``fast`` (a deliberate approximation when capped) is kept.

    Returns
    -------
    str
        On CUDA: ``fast`` without a cap (SDPA computes exactly that, in flash or
        memory-efficient kernels); with a cap ``flex`` (the cap and mask fused, exact within
        1.4e-6) where :func:`flex_available`, else ``exact``. On other devices ``configured``
        (compiling FlexAttention costs tens of seconds per input shape on a small CPU, and the
        exact path there runs the oneDNN/MKL matmuls).
    """
    if configured not in ATTENTION_IMPLEMENTATIONS:
        raise ConfigError(f"attention {configured!r} is not one of {ATTENTION_IMPLEMENTATIONS}")
    if torch.device(device).type != "cuda" or configured == "fast":
        return configured
    if atten_logit_cap <= 0.0:
        return "fast"
    return "flex" if flex_available(device) else "exact"


def set_attention(model: nn.Module, implementation: str,
                  device: str | torch.device | None = None) -> dict[str, int]:
    """Switch every :class:`DotProductAttention` of ``model`` to ``implementation``.

    Parameters
    ----------
    model : nn.Module
        Any model of this package.
    implementation : {"auto", "exact", "fast", "flex"}
        ``auto``: per layer, :func:`choose_attention` for its cap on ``device`` (default: the
        device of the model's parameters); a ``flex`` chosen this way falls back to ``exact``
        if it fails to compile.
    device : str or torch.device, optional
        See ``implementation``.

    Returns
    -------
    dict
        How many attention layers now use each implementation.
    """
    if implementation != "auto" and implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ConfigError(f"attention {implementation!r} is not one of "
                          f"{('auto', *ATTENTION_IMPLEMENTATIONS)}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, DotProductAttention):
            if implementation == "auto":
                chosen = choose_attention(module.atten_logit_cap, device, module.implementation)
                module.auto_flex = chosen == "flex" and module.implementation != "flex"
            else:
                chosen, module.auto_flex = implementation, False
            module.implementation = chosen
            counts[chosen] = counts.get(chosen, 0) + 1
    return counts


def init_weights(module: nn.Module) -> None:
    """Random initialisation close to the official Flax initialisers.

    Dense kernels: LeCun-normal (truncated normal, std 1/sqrt(fan_in)); biases zero; LayerNorm
    scale 0 (gain 1) and bias 0; per-dim scale 0. Embedding tables are set by their owners.
    """
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            std = 1.0 / math.sqrt(sub.in_features)
            # 0.8796 corrects the std of a normal truncated at 2 std (as flax lecun_normal does).
            nn.init.trunc_normal_(sub.weight, std=std / 0.87962566, a=-2 * std / 0.87962566,
                                  b=2 * std / 0.87962566)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, LayerNorm):
            nn.init.zeros_(sub.scale)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, PerDimScale):
            nn.init.zeros_(sub.per_dim_scale)
