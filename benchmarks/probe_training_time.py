"""Probe training time on 100k frames of 256-D features (targets: linear < 10 s, temporal < 2 min).

Features are random with a planted signal: 100 videos x 1,000 frames; 4 behaviors in bouts, each
shifting a few feature axes (one behavior rare, ~2 % of frames), 10 % of frames unlabeled. Fits
the linear and the temporal probe with their default settings (early stopping on held-out
videos), and as a baseline scikit-learn's LogisticRegression (lbfgs, one per behavior) on the
same frames, in the same process. Prints seconds, epochs, held-out mAP and ratios.

    .venv/bin/python benchmarks/probe_training_time.py [--frames 100000] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from prism_science.evaluation.metrics import mean_average_precision
from prism_science.probes import LinearProbe, TemporalProbe


def planted_features(n_frames: int, dim: int, frames_per_video: int, seed: int = 0):
    """``X (N, dim)`` float32, ``y (N, 4)`` int8 in {-1, 0, 1}, ``groups (N,)``."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n_frames, 4), np.int8)
    rates = (0.02, 0.01, 0.01, 0.001)  # bout starts per frame; the last behavior is rare
    for k, rate in enumerate(rates):
        for start in np.flatnonzero(rng.random(n_frames) < rate):
            y[start : start + int(rng.integers(10, 60)), k] = 1
    X = rng.normal(size=(n_frames, dim)).astype(np.float32)
    # The same behavior directions in every call (train and test come from one world).
    directions = np.random.default_rng(1234).normal(size=(4, dim)).astype(np.float32)
    directions *= 2.0 / np.sqrt(dim)
    X += y.astype(np.float32) @ directions
    groups = np.arange(n_frames) // frames_per_video
    truth = y.copy()
    y[rng.random(n_frames) < 0.1] = -1
    return X, y, truth, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared, loaded machine)")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, y, truth, groups = planted_features(args.frames, args.dim, 1000)
    X_test, _, truth_test, groups_test = planted_features(20_000, args.dim, 1000, seed=1)
    print(f"{len(X)} frames x {X.shape[1]}-D, {len(np.unique(groups))} videos, "
          f"positives per behavior {(truth == 1).mean(0).round(3).tolist()}, "
          f"torch threads {torch.get_num_threads()}")

    # Warm up torch's lazy initialisation (first optimizer step) outside the timings.
    LinearProbe(max_epochs=1).fit(X[:2000], truth[:2000])
    results = {}
    for name, probe in (("linear", LinearProbe(random_state=0)),
                        ("temporal", TemporalProbe(random_state=0))):
        start = time.perf_counter()
        probe.fit(X, y, groups=groups)
        seconds = time.perf_counter() - start
        score = mean_average_precision(truth_test, probe.predict_proba(X_test, groups=groups_test))
        results[name] = seconds
        print(f"{name:>9} probe: {seconds:6.1f} s, {probe.n_epochs_} epochs, held-out mAP "
              f"{score:.3f}", flush=True)

    if not args.skip_baseline:
        start = time.perf_counter()
        scores = np.zeros(truth_test.shape)
        for k in range(y.shape[1]):
            keep = y[:, k] >= 0
            model = LogisticRegression(max_iter=200).fit(X[keep], y[keep, k])
            scores[:, k] = model.predict_proba(X_test)[:, 1]
        seconds = time.perf_counter() - start
        results["sklearn"] = seconds
        print(f"  sklearn LogisticRegression (lbfgs, 4 behaviors): {seconds:6.1f} s, held-out "
              f"mAP {mean_average_precision(truth_test, scores):.3f}")
        print(f"linear probe / sklearn time ratio: {results['linear'] / seconds:.2f}")
    print(f"temporal / linear time ratio: {results['temporal'] / results['linear']:.1f}")
    print(f"targets: linear < 10 s -> {'met' if results['linear'] < 10 else 'MISSED'}; "
          f"temporal < 120 s -> {'met' if results['temporal'] < 120 else 'MISSED'}")


if __name__ == "__main__":
    main()
