"""Accuracy and speed of the built-in tracker on the real videos of ../shared/data/real.

- sleap_flies/clip.mp4 (1024 px, 2 flies, 1500 frames) against its proofread SLEAP tracks
  (clip.slp, 13 keypoints per fly, every frame labeled by a human);
- sleap_flies/20190128_113421.120s.mp4 (2 flies, 3000 frames) against SLEAP model predictions
  (not proofread);
- mabe_mice/EGS8X2MN4SSUGFWAV976.mp4 (512 px, 3 mice, 1801 frames) against the MABe22 keypoints
  in the DLC-layout .h5 beside it (1800 rows);
- dlc_openfield/m3v1mp4.mp4 (640x480, 1 mouse): no tracks for this video; coverage and speed only.

For each: median and 90th-percentile centroid error in pixels (the reference centroid is the
mean of its keypoints; "body" is the error to one body-centre keypoint: thorax / center back),
identity swaps, median heading error and the fraction of frames with the head and tail
swapped, and tracked frames per second on this machine.

    .venv/bin/python benchmarks/tracker_accuracy.py [--frames 1500] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from _common import add_shared_argument, find_shared, machine, settings

from prism_science.tracks import Tracks, compare_tracks, read_tracks, track_video

REPO = Path(__file__).resolve().parents[1]


def _heading_errors(tracks: Tracks, reference: Tracks, mapping: dict[str, str]) -> tuple[float,
                                                                                          float]:
    errors = []
    for k, subject in enumerate(tracks.subjects):
        j = reference.subjects.index(mapping[subject])
        n = min(tracks.n_frames, reference.n_frames)
        d = np.angle(np.exp(1j * (tracks.heading[:n, k] - reference.heading[:n, j])))
        errors.append(np.abs(d[np.isfinite(d)]))
    err = np.concatenate(errors)
    return float(np.degrees(np.median(err))), float(np.mean(err > np.pi / 2))


def _body_error(tracks: Tracks, reference: Tracks, mapping: dict[str, str], keypoint: str
                ) -> float:
    j_kp = reference.keypoint_names.index(keypoint)
    n = min(tracks.n_frames, reference.n_frames)
    errors = []
    for k, subject in enumerate(tracks.subjects):
        j = reference.subjects.index(mapping[subject])
        e = np.linalg.norm(tracks.centroids[:n, k] - reference.keypoints[:n, j, j_kp], axis=1)
        errors.append(e[np.isfinite(e)])
    return float(np.median(np.concatenate(errors)))


def run_one(name: str, video: Path, n_animals: int, reference: Tracks | None,
            body_keypoint: str | None, frames: int | None) -> dict:
    start = time.perf_counter()
    result = track_video(video, n_animals, stop=frames)
    seconds = time.perf_counter() - start
    tracks = result.tracks
    row = {"name": name, "frames": tracks.n_frames, "fps": tracks.n_frames / seconds,
           "short": len(result.short_frames), "split": result.split_frames,
           "found": float(tracks.present.mean())}
    if reference is not None:
        c = compare_tracks(tracks, reference)
        heading, flipped = _heading_errors(tracks, reference, c.mapping)
        row.update(median=c.median_error_px, p90=c.p90_error_px, swaps=c.identity_swaps,
                   heading=heading, flipped=flipped,
                   body=_body_error(tracks, reference, c.mapping, body_keypoint)
                   if body_keypoint else float("nan"),
                   length=float(np.nanmedian(reference.median_body_length())))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared_argument(parser)
    parser.add_argument("--frames", type=int, default=None,
                        help="track only this many frames of each video (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shared = find_shared(args.shared)
    if shared is None:
        raise SystemExit("this benchmark needs the real videos of the shared data folder: pass "
                         "--shared FOLDER or set $PRISM_SHARED")
    real = shared / "data" / "real"
    print(f"{machine()}; {settings()}")
    flies = real / "sleap_flies"
    mice = real / "mabe_mice"
    jobs = []
    if (flies / "clip.slp").is_file():
        jobs.append(("flies clip (proofread SLEAP)", flies / "clip.mp4", 2,
                     read_tracks(flies / "clip.slp"), "thorax"))
    analysis = flies / "20190128_113421.120s.predictions.analysis.h5"
    if analysis.is_file():
        jobs.append(("flies 120 s (SLEAP predictions)", flies / "20190128_113421.120s.mp4", 2,
                     read_tracks(analysis), "thorax"))
    mabe = mice / "EGS8X2MN4SSUGFWAV976.h5"
    if mabe.is_file():
        # the keypoint file has 1800 rows for the 1801-frame video: compared on the first 1800
        jobs.append(("MABe22 mice (keypoints)", mice / "EGS8X2MN4SSUGFWAV976.mp4", 3,
                     read_tracks(mabe), "center back"))
    openfield = real / "dlc_openfield" / "m3v1mp4.mp4"
    if openfield.is_file():
        jobs.append(("DLC open field (no tracks)", openfield, 1, None, None))
    if not jobs:
        raise SystemExit(f"no real videos under {real}; pass --shared")
    print(f"{'video':34s} {'frames':>6s} {'fps':>6s} {'found':>6s} {'median':>7s} {'p90':>6s} "
          f"{'body':>6s} {'swaps':>5s} {'head°':>6s} {'flip':>5s} {'len':>5s}")
    for name, video, n, reference, keypoint in jobs:
        try:
            row = run_one(name, video, n, reference, keypoint, args.frames)
        except Exception as exc:  # report and go on to the next video
            print(f"{name:34s} failed: {exc}")
            continue
        if reference is None:
            print(f"{name:34s} {row['frames']:6d} {row['fps']:6.1f} {row['found']:6.1%}"
                  f"  (fewer than {n} found in {row['short']} frames)")
            continue
        print(f"{name:34s} {row['frames']:6d} {row['fps']:6.1f} {row['found']:6.1%} "
              f"{row['median']:7.1f} {row['p90']:6.1f} {row['body']:6.1f} {row['swaps']:5d} "
              f"{row['heading']:6.1f} {row['flipped']:5.1%} {row['length']:5.0f}")
    print("errors in pixels of the full frame; len = median reference body length (px)")


if __name__ == "__main__":
    main()
