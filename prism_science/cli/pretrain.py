"""``prism-science pretrain stage1|stage2|lit``: run a pretraining stage (package prism_training).

Examples::

    prism-science pretrain stage1 --config stage1_tiny --out runs/default/stage1
    prism-science pretrain stage2 --config stage2_tiny --out runs/default/stage2 \\
        --set teacher=runs/default/stage1/final --set mask_ratio=0.8
    prism-science pretrain stage2 --config stage2_tiny --out runs/default/stage2 --resume

Under ``torchrun --nproc-per-node N -m prism_science pretrain ...`` the same command trains with
DDP (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import argparse
import json
import sys

from prism_science.errors import PrismError

STAGES = ("stage1", "stage2", "lit")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` sub-command."""
    parser = subparsers.add_parser(
        "pretrain",
        help="train an encoder: stage1 (video-text), stage2 (masked distillation), lit",
        description="Run one stage of the two-stage VideoPrism-style pretraining pipeline "
        "(plus LiT). Configs are named dataclasses (--list shows them); --set overrides a "
        "field. The run folder gets train_config.json, checkpoint.pt, log.jsonl and final/.",
    )
    parser.add_argument("stage", choices=STAGES, nargs="?", help="which stage to run")
    parser.add_argument("--config", help="registered config name (e.g. stage1_tiny)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE",
                        help="override config fields (one or more pairs; repeatable)")
    parser.add_argument("--out", help="run folder (default: the config's out_dir)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from RUN_DIR/checkpoint.pt")
    parser.add_argument("--list", action="store_true", help="list the registered configs")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, then run the stage's ``main``; returns the exit code."""
    from prism_training import config as configs

    if args.list:
        for name in configs.list_configs():
            cfg = configs.get_config(name)
            print(f"{name:16s} {cfg.stage:7s} {cfg.model}")
        return 0
    if not args.stage or not args.config:
        print("prism-science pretrain: give STAGE and --config NAME (or --list)", file=sys.stderr)
        return 2
    try:
        cfg = configs.get_config(args.config)
        if cfg.stage != args.stage:
            raise configs.ConfigError(
                f"config {args.config!r} is a {cfg.stage} config, not {args.stage}; choose one "
                "of " + ", ".join(n for n in configs.list_configs()
                                  if configs.get_config(n).stage == args.stage))
        overrides = list(args.overrides)
        if args.out:
            overrides.append(f"out_dir={args.out}")
        cfg = configs.apply_overrides(cfg, overrides)
        if args.print_config:
            print(json.dumps(configs.config_to_dict(cfg), indent=2, sort_keys=True))
            return 0
        if args.stage == "stage1":
            from prism_training.stage1 import main
        elif args.stage == "stage2":
            from prism_training.stage2 import main
        else:
            from prism_training.lit import main
        summary = main(cfg, resume=args.resume)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    state = "finished" if summary["finished"] else "stopped"
    print(f"{args.stage} {state} at step {summary['step']}: {json.dumps(summary['last'])}")
    return 0
