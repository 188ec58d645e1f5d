"""The ``convert-weights`` command: official VideoPrism .npz checkpoint -> weights folder."""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert-weights`` sub-command."""
    parser = subparsers.add_parser(
        "convert-weights",
        help="convert an official VideoPrism .npz checkpoint into a weights folder",
        description="Convert an official VideoPrism Flax checkpoint (flat .npz, layer-stacked "
        "'_repeated' or per-layer; encoder, classifier or LvT) into a weights folder "
        "(config.json + model.safetensors) that prism_science.load_model reads. Without "
        "--variant the architecture is inferred from the keys and shapes.",
    )
    parser.add_argument("checkpoint", help="official .npz checkpoint")
    parser.add_argument("--out", required=True, help="weights folder to write")
    parser.add_argument(
        "--variant",
        help="registered model name the checkpoint must match "
        "(see `prism-science models`); inferred from the checkpoint when omitted",
    )
    parser.add_argument("--name", help="model name to record (default: variant or folder name)")
    parser.add_argument(
        "--atten-logit-cap",
        type=float,
        default=None,
        help="attention logit soft cap to record (released models: 50)",
    )
    parser.add_argument(
        "--tokenizer",
        help="SentencePiece .model file to copy into the folder (LvT models)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print where the folder was written."""
    import shutil
    from pathlib import Path

    from prism_science.errors import PrismError
    from prism_science.models.convert import convert_checkpoint
    from prism_science.models.weights import TOKENIZER_FILE, load_model

    overrides = {}
    if args.atten_logit_cap is not None:
        overrides["atten_logit_cap"] = args.atten_logit_cap
    try:
        out = convert_checkpoint(args.checkpoint, args.out, variant=args.variant,
                                 name=args.name, **overrides)
        if args.tokenizer:
            shutil.copyfile(args.tokenizer, Path(out) / TOKENIZER_FILE)
        model = load_model(out)
    except (PrismError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({model.config.family}, {n_params / 1e6:.1f}M parameters, "
          f"file sha256 {model.tensors_sha256}, identity {model.weights_sha256})")
    return 0
