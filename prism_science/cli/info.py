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
        help="list the registered model variants",
        description="List every registered model variant with its family, parameter count, "
        "frames, resolution, and whether weights for it are present on this machine.",
    )
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
    """Print the table of registered model variants."""
    from prism_science.models import model_table

    rows = model_table()
    header = ("name", "family", "params", "frames", "resolution", "weights")
    table = [header] + [
        (
            row["name"],
            row["family"],
            f"{row['num_params'] / 1e6:.1f}M",
            str(row["num_frames"]),
            f"{row['image_size']}px",
            "yes" if row["weights_present"] else "no",
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0
