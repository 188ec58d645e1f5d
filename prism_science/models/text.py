"""CoCa-style text encoder (official ``videoprism.encoders.TextEncoder``) and a SentencePiece
tokenizer wrapper with the official text canonicalisation.

Text ids (B, L) -> ``token_emb`` * sqrt(D) + sinusoidal positions -> learned ``cls_emb`` (times
sqrt(D)) appended at the END with padding 0 -> causal + padding masked ReLU transformer
(``unimodal_transformer``) -> ``unimodal_ln`` -> (B, L+1, D); the text embedding is the output at
the appended class token (the last position).
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prism_science.errors import TextInputError, WeightsError
from prism_science.models.layers import LayerNorm, StackedTransformer, init_weights, relu

# Official defaults (videoprism.models): texts are cut / padded to 64 tokens, pad id 0.
TEXT_MAX_LENGTH = 64


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Official ``PositionalEmbedding``: [sin | cos] of position * geometric timescales 1..1e4.

    Returns
    -------
    torch.Tensor
        (length, dim) float32.
    """
    position = torch.arange(length, dtype=torch.float32, device=device)
    num_timescales = dim // 2
    log_increment = math.log(10_000.0) / max(num_timescales - 1, 1)
    inv_timescales = torch.exp(
        torch.arange(num_timescales, dtype=torch.float32, device=device) * -log_increment
    )
    scaled = position[:, None] * inv_timescales[None, :]
    emb = torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class _TokenEmbedding(nn.Module):
    def __init__(self, vocabulary_size: int, dim: int) -> None:
        super().__init__()
        self.emb_var = nn.Parameter(torch.zeros(vocabulary_size, dim))


class TextEncoder(nn.Module):
    """The text tower of the LvT model.

    Parameters
    ----------
    vocabulary_size, model_dim, num_layers, num_heads, mlp_dim : int
        Architecture (official LvT: mlp_dim = 4 * model_dim).
    atten_logit_cap : float
        Soft cap of attention logits.
    norm_policy : str
        ``"pre"`` (v1 base/large) or ``"primer_hybrid"`` (giant).
    causal : bool
        Causal attention (official ``enable_causal_atten``).
    attention : str
        ``"exact"`` or ``"fast"``.
    """

    def __init__(
        self,
        vocabulary_size: int,
        model_dim: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        atten_logit_cap: float = 0.0,
        norm_policy: str = "pre",
        causal: bool = True,
        attention: str = "exact",
    ) -> None:
        super().__init__()
        self.model_dim = model_dim
        self.vocabulary_size = vocabulary_size
        self.token_emb = _TokenEmbedding(vocabulary_size, model_dim)
        self.cls_emb = nn.Parameter(torch.zeros(1, 1, model_dim))
        self.unimodal_transformer = StackedTransformer(
            num_layers, model_dim, num_heads, mlp_dim, relu, atten_logit_cap, norm_policy,
            causal=causal, implementation=attention,
        )
        self.unimodal_ln = LayerNorm(model_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisers: embeddings normal(1/sqrt(D)), dense layers LeCun-normal."""
        init_weights(self)
        std = 1.0 / math.sqrt(self.model_dim)
        nn.init.normal_(self.token_emb.emb_var, std=std)
        nn.init.normal_(self.cls_emb, std=std)

    def forward(self, ids: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        """Encode token ids.

        Parameters
        ----------
        ids : torch.Tensor
            (B, L) int token ids (pad id 0).
        paddings : torch.Tensor
            (B, L) float, 1.0 marks padding.

        Returns
        -------
        torch.Tensor
            (B, L + 1, D) features; position L is the class token.
        """
        check_text(ids, paddings, self.vocabulary_size)
        b, length = ids.shape
        dtype = self.token_emb.emb_var.dtype
        x = self.token_emb.emb_var[ids.long()] * self.model_dim**0.5
        x = x + sinusoidal_positions(length, self.model_dim, ids.device).to(dtype)
        cls = self.cls_emb.expand(b, -1, -1) * self.model_dim**0.5
        x = torch.cat([x, cls], dim=1)
        paddings = torch.cat(
            [paddings.to(dtype), torch.zeros(b, 1, dtype=dtype, device=paddings.device)], dim=1
        )
        x, _ = self.unimodal_transformer(x, paddings)
        return self.unimodal_ln(x)


def check_text(ids: torch.Tensor, paddings: torch.Tensor, vocabulary_size: int) -> None:
    """Raise :class:`TextInputError` unless ids/paddings are matching (B, L) tensors in range."""
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
        found = (tuple(ids.shape), ids.dtype) if isinstance(ids, torch.Tensor) else type(ids)
        raise TextInputError(
            f"text ids must be an integer tensor of shape (B, L), found {found}; "
            "tokenize texts with model.tokenizer(texts)"
        )
    if not isinstance(paddings, torch.Tensor) or tuple(paddings.shape) != tuple(ids.shape):
        found = tuple(paddings.shape) if isinstance(paddings, torch.Tensor) else type(paddings)
        raise TextInputError(
            f"text paddings must be a tensor of the ids' shape {tuple(ids.shape)} "
            f"(1.0 = padding), found {found}"
        )
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocabulary_size):
        raise TextInputError(
            f"text ids must lie in [0, {vocabulary_size}) (the vocabulary size), found "
            f"[{int(ids.min())}, {int(ids.max())}]; was the text tokenized with this model's "
            "tokenizer?"
        )


def canonicalize_text(text: str) -> str:
    """Official text canonicalisation: punctuation -> spaces, lower case, single spaces, ``.``.

    Examples
    --------
    >>> canonicalize_text("Hello,World..")
    'hello world.'
    """
    table = str.maketrans(string.punctuation, " " * len(string.punctuation))
    return " ".join(text.translate(table).lower().split()) + "."


class Tokenizer:
    """SentencePiece tokenizer with the official VideoPrism text pipeline.

    Parameters
    ----------
    model_path : str or Path
        A SentencePiece ``.model`` file (the official one is the c4_en 32k vocabulary).
    max_length : int
        Ids are cut / padded to this length (official 64).
    pad_id : int
        Id of padding (official 0).
    """

    def __init__(
        self, model_path: str | Path, max_length: int = TEXT_MAX_LENGTH, pad_id: int = 0
    ) -> None:
        import sentencepiece

        self.model_path = Path(model_path)
        self.max_length = max_length
        self.pad_id = pad_id
        try:
            data = self.model_path.read_bytes()
            self._sp = sentencepiece.SentencePieceProcessor()
            self._sp.LoadFromSerializedProto(data)
        except (OSError, RuntimeError) as exc:
            raise WeightsError(
                f"cannot load the SentencePiece model {self.model_path}: {exc}; give the path of "
                "a valid .model file (e.g. the official c4_en SentencePiece model)"
            ) from exc

    @property
    def vocab_size(self) -> int:
        """Number of pieces in the vocabulary."""
        return int(self._sp.GetPieceSize())

    def encode(self, text: str, canonicalize: bool = True) -> list[int]:
        """Token ids of one text (no BOS/EOS, as the official pipeline), not padded."""
        if canonicalize:
            text = canonicalize_text(text)
        return list(self._sp.EncodeAsIds(text))

    def __call__(
        self, texts: str | Sequence[str], canonicalize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize texts into padded ids and paddings.

        Parameters
        ----------
        texts : str or sequence of str
            Captions or prompts.
        canonicalize : bool
            Apply :func:`canonicalize_text` first (official behaviour).

        Returns
        -------
        ids : torch.Tensor
            (B, max_length) int64, padded with ``pad_id``.
        paddings : torch.Tensor
            (B, max_length) float32, 1.0 at padded positions.
        """
        if isinstance(texts, str):
            texts = [texts]
        ids = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int64)
        paddings = np.ones((len(texts), self.max_length), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = self.encode(text, canonicalize)[: self.max_length]
            ids[row, : len(tokens)] = tokens
            paddings[row, : len(tokens)] = 0.0
        return torch.from_numpy(ids), torch.from_numpy(paddings)
