"""The ``store`` command: look after feature stores.

    prism-science store repair STORE [--out NEW]

``repair`` recovers every complete video of a store damaged by a kill or a full disk
(:func:`prism_science.store.repair_store`): an HDF5 file into a new file (``NAME.repaired.h5``
beside it unless ``--out``), a Zarr store in place (or into ``--out``). Exit code 0 when
everything was recovered whole, 1 when the repaired store lacks something (listed), 2 when
nothing could be repaired.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``store`` command and its ``repair`` action."""
    parser = subparsers.add_parser(
        "store", help="repair a damaged feature store",
        description="Look after feature stores (see docs/store.md and docs/robustness.md).")
    sub = parser.add_subparsers(dest="store_command", metavar="ACTION")
    rep = sub.add_parser(
        "repair", help="recover every complete video of a damaged store",
        description="Read a store damaged by a kill, a full disk or a bad disk unit by unit and "
        "keep every video whose record reads back, with every feature chunk and item that reads "
        "back whole; chunks that do not are marked to be recomputed by `prism-science extract`. "
        "HDF5: written into a new file (NAME.repaired.h5 unless --out); Zarr: repaired in place "
        "unless --out. Exit code 0: everything recovered; 1: something could not be (listed); "
        "2: nothing could be repaired.")
    rep.add_argument("store", type=Path, help="the damaged store (.h5 file or .zarr folder)")
    rep.add_argument("--out", type=Path, help="write the recovered store here (a new path; "
                     "its suffix chooses the format) instead of the default")
    rep.set_defaults(func=run_repair)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_repair(args: argparse.Namespace) -> int:
    """Repair a store and print what was recovered and what was not."""
    from prism_science.errors import PrismError
    from prism_science.store import repair_store

    try:
        report = repair_store(args.store, args.out)
    except (PrismError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    if report.in_place:
        print(f"the store {report.output} can be used again; rerun `prism-science extract` to "
              "recompute what is marked missing")
    else:
        print(f"the recovered store is {report.output}: check it, then use it in place of "
              f"{report.source} (e.g. mv {report.output} {report.source}); rerun "
              "`prism-science extract` to recompute what is missing")
    return 0 if report.everything_recovered else 1
