"""Active learning vs random labeling on synthetic per-frame features.

Synthetic videos: behaviors in bouts along time (background, two common behaviors and a rare
one, ~3 % of frames); each frame's feature is its behavior's cluster centre plus noise; the
common clusters overlap, the rare one lies apart. Starting from the same random frames,
labels are added in batches, either as suggested by
:func:`prism_science.evaluation.active.suggest_frames` (entropy + k-center diversity) or at
random; a linear probe is retrained after each batch and scored (mAP) on held-out videos. Prints the
labels each strategy needed to reach the target mAP.

    .venv/bin/python benchmarks/active_learning.py [--seeds 3] [--target 0.88]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from prism_science.evaluation.active import labels_to_reach, simulate_active_learning
from prism_science.probes import LinearProbe


def synthetic_videos(n_frames: int, seed: int, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(n_frames, dim)`` float32 features and ``(n_frames, 3)`` 0/1 labels.

    Background and two common behaviors have overlapping clusters (a hard boundary); the rare
    behavior (~2 % of frames, at least 3 bouts) has its own cluster away from them, which random
    frames seldom hit.
    """
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(1234)  # the same cluster centres for every seed
    centres = world.normal(size=(4, dim)) * 0.45
    centres[3] *= 2.5
    classes: list[int] = []
    while len(classes) < n_frames:
        behavior = int(rng.choice(4, p=[0.6, 0.2, 0.18, 0.02]))
        classes += [behavior] * int(rng.integers(10, 60))
    classes_arr = np.asarray(classes[:n_frames])
    for _ in range(3 - len(np.flatnonzero(np.diff(np.r_[0, classes_arr == 3]) == 1))):
        start = int(rng.integers(0, n_frames - 30))
        classes_arr[start : start + 30] = 3
    features = centres[classes_arr] + rng.normal(size=(n_frames, dim))
    labels = np.zeros((n_frames, 3), np.int64)
    labels[classes_arr > 0, classes_arr[classes_arr > 0] - 1] = 1
    return features.astype(np.float32), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.88)
    parser.add_argument("--pool", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--max-labels", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)

    def make_probe() -> LinearProbe:
        return LinearProbe(early_stopping=False, tune_thresholds=False, random_state=0)

    results = {"active": [], "random": []}
    start = time.perf_counter()
    for seed in range(args.seeds):
        X, y = synthetic_videos(args.pool, seed)
        X_eval, y_eval = synthetic_videos(2000, 1000 + seed)
        for strategy in results:
            curve = simulate_active_learning(
                make_probe, X, y, X_eval, y_eval, strategy=strategy, initial=10,
                batch=args.batch, max_labels=args.max_labels, target_map=args.target,
                random_state=seed,
            )
            needed = labels_to_reach(curve, args.target)
            results[strategy].append(needed)
            shown = needed if needed is not None else f">{args.max_labels}"
            print(f"seed {seed} {strategy:>6}: {shown} labels to mAP {args.target} "
                  f"(final mAP {curve[-1][1]:.3f})", flush=True)
    print()
    for strategy, counts in results.items():
        reached = [c if c is not None else args.max_labels for c in counts]
        print(f"{strategy:>6}: labels to reach mAP {args.target}: {counts} "
              f"(mean {np.mean(reached):.0f}, unreached counted as {args.max_labels})")
    mean_active = np.mean([c or args.max_labels for c in results["active"]])
    mean_random = np.mean([c or args.max_labels for c in results["random"]])
    print(f"random / active label ratio: {mean_random / mean_active:.2f}x "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
