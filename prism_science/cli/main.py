"""Entry point of the ``prism-science`` command.

Each command lives in its own module of this package and exposes ``register(subparsers)``, which
adds an ``argparse`` sub-parser whose ``func`` default runs the command and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Command modules, in the order `prism-science --help` lists them.
COMMAND_MODULES = (
    "prism_science.cli.info",
    "prism_science.cli.convert",
    "prism_science.cli.synth",
    "prism_science.cli.extract",
    "prism_science.cli.store",
    "prism_science.cli.labels",
    "prism_science.cli.pretrain",
    "prism_science.cli.probe",
    "prism_science.cli.search",
    "prism_science.cli.track",
    "prism_science.cli.bench",
    "prism_science.cli.demo",
    "prism_science.cli.gui",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prism-science",
        description="Video encoders and behavior annotation for ethology and neuroscience labs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
