"""The ``info`` and ``models`` commands: versions, devices and the registered model variants."""

from __future__ import annotations

import argparse
import platform
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` and ``models`` sub-commands."""
    info = subparsers.add_parser(
        "info",
        help="print versions, devices and registered models",
        description="Print the versions of prism-science and its main dependencies, the compute "
        "devices torch can see, and the registered model variants.",
    )
    info.set_defaults(func=run)
    models = subparsers.add_parser(
        "models",
        help="list the registered model variants and which weights are cached",
        description="List every registered model variant with its family, parameter count, "
        "frames, resolution, and where its weights come from: bundled, cached (installed or "
        "downloaded into the cache), download (official weights, fetched from the Hugging Face "
        "Hub and converted on first use) or random (none: random initialisation).",
    )
    models.add_argument(
        "--fetch",
        nargs="+",
        metavar="NAME",
        help="download and convert the official weights of these variants into the cache now "
        "(e.g. videoprism-v1-base videoprism-lvt-v1-base)",
    )
    models.add_argument("--force", action="store_true",
                        help="with --fetch: download and convert again even when cached")
    models.set_defaults(func=run_models)


def _version(module_name: str) -> str:
    try:
        module = __import__(module_name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))


def run(args: argparse.Namespace) -> int:
    """Print versions, devices and registered models."""
    import torch

    import prism_science
    from prism_science.models import list_models

    print(f"prism-science {prism_science.__version__}")
    print(f"python        {sys.version.split()[0]} ({platform.platform()})")
    for name in ("torch", "numpy", "av", "zarr", "h5py", "safetensors", "sentencepiece", "sklearn"):
        print(f"{name:<13} {_version(name)}")
    print("devices:")
    print(f"  cpu   {torch.get_num_threads()} torch threads")
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            print(f"  cuda:{index} {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        print("  cuda  not available")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        print("  mps   available")
    print("models:")
    for name in list_models():
        print(f"  {name}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    """Print the table of registered model variants (after fetching any named by --fetch)."""
    from prism_science.errors import PrismError
    from prism_science.models import fetch_official, model_table
    from prism_science.models.folder import cache_dir, user_weights_dir

    for name in getattr(args, "fetch", None) or []:
        try:
            folder = fetch_official(name, force=args.force)
        except PrismError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {folder}")
    rows = model_table()
    header = ("name", "family", "params", "frames", "resolution", "weights")
    table = [header] + [
        (
            row["name"],
            row["family"],
            f"{row['num_params'] / 1e6:.1f}M",
            str(row["num_frames"]),
            f"{row['image_size']}px",
            row["weights"],
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    print(f"weights cache: {user_weights_dir()} (PRISM_SCIENCE_CACHE={cache_dir()}); "
          "'download' = fetched from the Hugging Face Hub on first use "
          "(prism-science models --fetch NAME)")
    return 0
