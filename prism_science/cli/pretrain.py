"""``prism-science pretrain windows|stage1|stage2|lit``: the steps of the pretraining recipe.

Examples::

    prism-science synth --n-videos 217 --out runs/synth_train --seed 1 --size 160
    prism-science pretrain windows --config stage1_tiny      # runs/default/train_windows.jsonl
    prism-science pretrain stage1 --config stage1_tiny       # run folder runs/default/stage1
    prism-science pretrain stage2 --config stage2_tiny --out my_runs/s2 \\
        --set teacher=runs/default/stage1/final mask_ratio=0.8
    prism-science pretrain stage2 --config stage2_tiny --resume
    prism-science pretrain stage1 --config stage1_tiny --workdir /scratch/prism_runs
    prism-science pretrain stage1 --config stage1_crops   # animal-centred crops (crop_manifest)

Paths stored in a named config are relative to ``--workdir`` (default ``./runs``); paths typed
on the command line (``--out``, ``--set``, ``--sample-data``) are relative to the current
directory. The resolved config, all paths absolute, is saved in the run folder. Nothing is
written beside the installed package.

Under ``torchrun --nproc-per-node N -m prism_science pretrain ...`` the same command trains with
DDP (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import argparse
import json
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from prism_science.errors import ConfigError, PrismError

if TYPE_CHECKING:
    from prism_training.config import TrainConfig

STAGES = ("stage1", "stage2", "lit")
STEPS = ("windows", *STAGES)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` sub-command."""
    parser = subparsers.add_parser(
        "pretrain",
        help="train an encoder: windows (manifest), stage1 (video-text), stage2 (masked "
        "distillation), lit",
        description="Run one step of the two-stage VideoPrism-style pretraining recipe: "
        "'windows' writes a config's manifest of captioned windows from synthetic clips; "
        "stage1, stage2 and lit train. Configs are named dataclasses (--list shows them); "
        "--set overrides a field. A run folder gets train_config.json, checkpoint.pt, "
        "log.jsonl and final/.",
    )
    parser.add_argument("step", choices=STEPS, nargs="?", metavar="STEP",
                        help="windows, stage1, stage2 or lit")
    parser.add_argument("--config", help="registered config name (e.g. stage1_tiny)")
    parser.add_argument("--workdir", default=None, metavar="DIR",
                        help="work directory the config's paths are relative to "
                        "(default: ./runs)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE",
                        help="override config fields (one or more pairs; repeatable)")
    parser.add_argument("--out", help="run folder (default: the config's out_dir)")
    parser.add_argument("--sample-data", metavar="DIR",
                        help="the sample_data/ folder of a clone of the repository, for the "
                        "stage-2 recipe configs (default: ./sample_data when it exists)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from RUN_DIR/checkpoint.pt")
    parser.add_argument("--list", action="store_true", help="list the registered configs")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, then run the step; returns the exit code."""
    from prism_training import config as configs

    if args.list:
        print(f"{'config':20s} {'stage':7s} {'model':30s} run folder (under --workdir)")
        for name in configs.list_configs():
            cfg = configs.get_config(name)
            print(f"{name:20s} {cfg.stage:7s} {cfg.model:30s} {cfg.out_dir}")
        return 0
    if not args.step or not args.config:
        print("prism-science pretrain: give STEP and --config NAME (or --list)", file=sys.stderr)
        return 2
    try:
        cfg = _resolve(args, configs)
        if args.print_config:
            print(json.dumps(configs.train_config_to_dict(cfg), indent=2, sort_keys=True))
            return 0
        if args.step == "windows":
            return _write_windows(cfg)
        if args.step == "stage1":
            from prism_training.stage1 import main
        elif args.step == "stage2":
            from prism_training.stage2 import main
        else:
            from prism_training.lit import main
        summary = main(cfg, resume=args.resume, workdir=args.workdir or configs.DEFAULT_WORKDIR)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    state = "finished" if summary["finished"] else "stopped"
    print(f"{args.step} {state} at step {summary['step']} in {cfg.out_dir}: "
          f"{json.dumps(summary['last'])}")
    return 0


def _resolve(args: argparse.Namespace, configs: ModuleType) -> TrainConfig:
    """The named config, checked against the step, with --set/--out/--sample-data applied and
    every path absolute (``prism_training.config.resolve_config``)."""
    cfg = configs.get_config(args.config)
    if args.step in STAGES and cfg.stage != args.step:
        raise ConfigError(
            f"config {args.config!r} is a {cfg.stage} config, not {args.step}; choose one of "
            + ", ".join(n for n in configs.list_configs()
                        if configs.get_config(n).stage == args.step))
    if args.step == "windows" and (args.out or args.resume):
        raise ConfigError("windows writes the config's manifest; set its path with "
                          "--set manifest=PATH (--out and --resume are for training steps)")
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out_dir={args.out}")
    if args.sample_data:
        overrides.append(f"sample_data={args.sample_data}")
    return configs.resolve_config(cfg, args.workdir or configs.DEFAULT_WORKDIR, overrides)


def _write_windows(cfg: TrainConfig) -> int:
    """Cut ``cfg.synth_dir``'s clips into captioned windows of ``cfg.window_frames`` frames and
    write them to ``cfg.manifest``."""
    from prism_training.data import read_manifest, write_synth_window_manifest

    if not cfg.synth_dir or not cfg.manifest:
        crops = (" (crop configs read the crops.jsonl that `prism-science synth "
                 "--per-animal-crops` writes: no windows step)") if cfg.crop_manifest else ""
        raise ConfigError(
            f"config {cfg.name} has no synth_dir or no manifest{crops}; set both, e.g. --set "
            "synth_dir=runs/synth_train manifest=runs/default/train_windows.jsonl")
    path = write_synth_window_manifest(cfg.synth_dir, cfg.manifest, cfg.window_frames)
    entries = read_manifest(path)
    n_clips = len({entry.path for entry in entries})
    print(f"wrote {len(entries)} windows of {cfg.window_frames} frames from {n_clips} clips of "
          f"{cfg.synth_dir} to {path}")
    return 0
