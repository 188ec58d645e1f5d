"""Load time of a cached model against building it with random initialisation (issue 20, P6).

Builds the variant with random weights (``build_model``: every parameter initialised, as
loading did before it skipped the throwaway init), saves it as a weights folder under
``$PRISM_SCIENCE_WEIGHTS/<name>`` in a temporary folder (where a converted official checkpoint is
cached), then loads it by name with ``load_model(name)`` as a user would, several times, all in
the same process. Prints wall and CPU seconds of each step, the split of one load (sha256 of
the file, memory-mapped read, meta-device build, assigning the tensors), and the ratio
load / build. No network: the folder is in the cache, so nothing is downloaded.

    python benchmarks/load_time.py                                   # official base, < 2 min
    python benchmarks/load_time.py --variant prism-tiny-p16-f16-r128 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="videoprism-v1-base-p18-f16-r288")
    parser.add_argument("--repeats", type=int, default=3, help="timed loads")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: "
                        "torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="prism-load-time-") as tmp:
        # Point the weights cache at the temporary folder before the library reads it.
        os.environ["PRISM_SCIENCE_WEIGHTS"] = tmp
        from prism_science.models import build_model, load_model, save_model
        from prism_science.models.folder import (
            WEIGHTS_FILE,
            build_empty,
            load_state,
            read_config,
            read_tensors,
            sha256_file,
        )
        from prism_science.models.registry import resolve_name

        name = resolve_name(args.variant)
        torch.manual_seed(0)
        built, build_wall, build_cpu = _timed(lambda: build_model(name))
        folder = Path(tmp) / name
        _, save_wall, _ = _timed(lambda: save_model(built, folder))
        size = (folder / WEIGHTS_FILE).stat().st_size
        n_params = sum(p.numel() for p in built.parameters())

        loads = []
        for _ in range(args.repeats):
            model, wall, cpu = _timed(lambda: load_model(name))
            loads.append((wall, cpu))
        same = all(torch.equal(a, b) for a, b in
                   zip(built.state_dict().values(), model.state_dict().values(), strict=True))

        # Where one load goes.
        path = folder / WEIGHTS_FILE
        _, hash_wall, _ = _timed(lambda: sha256_file(path))
        tensors, read_wall, _ = _timed(lambda: read_tensors(path))
        config = read_config(folder)[1]
        empty, empty_wall, _ = _timed(lambda: build_empty(config, name=name))
        _, assign_wall, _ = _timed(lambda: load_state(empty, tensors, str(path)))

    best_wall = min(w for w, _ in loads)
    best_cpu = min(c for _, c in loads)
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"variant {name}: {n_params / 1e6:.1f}M parameters, weights file {size / 2**20:.0f} "
          f"MiB; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {load_avg:.1f} at the end")
    print(f"build with random init: {build_wall:.2f} s wall, {build_cpu:.2f} s CPU")
    print(f"save_model: {save_wall:.2f} s wall")
    print("load_model(name) from the cache: " + ", ".join(
        f"{w:.2f} s wall / {c:.2f} s CPU" for w, c in loads) + f"; tensors equal: {same}")
    print(f"one load split: sha256 {hash_wall:.2f} s, memory-mapped read {read_wall:.3f} s, "
          f"meta build {empty_wall:.3f} s, assign {assign_wall:.3f} s")
    print(f"ratio cached load / build with init: wall {best_wall / build_wall:.4f} "
          f"({build_wall / best_wall:.0f}x faster), CPU {best_cpu / max(build_cpu, 1e-9):.4f}")


if __name__ == "__main__":
    main()
