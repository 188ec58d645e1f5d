"""Zero-shot text-video retrieval of a video-text model on held-out synthetic clips.

Each held-out clip (``prism-science synth --seed 2``, never trained on) is cut into 24-frame
windows captioned from their own labels (:func:`prism_training.data.write_synth_window_manifest`,
the captions stage 1 and LiT train on); the model embeds the first 16 frames of each window
(``encode_video``) and every caption (``encode_texts``). Printed: text->video and video->text
top-1 / top-5 accuracy in random groups of ``--group`` windows (chance 1/group and 5/group),
averaged over groups, for the model and for the same architecture with random weights.

    python benchmarks/text_retrieval.py --model prism_science/weights/default
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from prism_science.models import build_model, load_model
from prism_training.data import build_cache, read_manifest, write_synth_window_manifest

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 24


def load_windows(test_dir: Path, size: int, frames: int) -> tuple[np.ndarray, list[str]]:
    """(N, frames, size, size, 3) uint8 clips and their N captions."""
    manifest = test_dir.parent / f"{test_dir.name}_windows.jsonl"
    entries = read_manifest(write_synth_window_manifest(test_dir, manifest, WINDOW))
    clips = {c.entry.path: c for c in build_cache(
        list({e.path: e for e in entries}.values()), ROOT / "runs" / "cache", size)}
    videos, captions = [], []
    for entry in entries:
        data = clips[entry.path].frames()
        start = entry.start_frame or 0
        videos.append(np.asarray(data[start : start + frames]))
        captions.append(entry.caption)
    return np.stack(videos), captions


@torch.no_grad()
def embed(model: torch.nn.Module, videos: np.ndarray, captions: list[str],
          batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    video_emb = torch.cat([model.encode_video(torch.from_numpy(videos[i : i + batch]).float()
                                              / 255.0) for i in range(0, len(videos), batch)])
    text_emb = torch.cat([model.encode_texts(captions[i : i + 64])
                          for i in range(0, len(captions), 64)])
    return video_emb, text_emb


def retrieval(video_emb: torch.Tensor, text_emb: torch.Tensor, group: int,
              seed: int = 0) -> dict[str, float]:
    """Top-1 / top-5 accuracy of both directions within random groups of ``group`` pairs."""
    order = np.random.default_rng(seed).permutation(len(video_emb))
    hits: dict[str, list[float]] = {k: [] for k in ("t2v@1", "t2v@5", "v2t@1", "v2t@5")}
    for start in range(0, len(order) - group + 1, group):
        idx = torch.from_numpy(order[start : start + group])
        sims = text_emb[idx] @ video_emb[idx].t()  # (group texts, group videos)
        target = torch.arange(group)
        for name, s in (("t2v", sims), ("v2t", sims.t())):
            rank = (s > s[target, target][:, None]).sum(1)  # how many beat the true pair
            hits[f"{name}@1"].append(float((rank < 1).float().mean()))
            hits[f"{name}@5"].append(float((rank < 5).float().mean()))
    return {k: float(np.mean(v)) for k, v in hits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "prism_science" / "weights" / "default"))
    parser.add_argument("--test-dir", default=str(ROOT / "runs" / "synth_test"),
                        help="held-out synthetic clips (prism-science synth --seed 2)")
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    videos, captions = load_windows(Path(args.test_dir), model.image_size, model.num_frames)
    torch.manual_seed(0)
    random_model = build_model(model.config).eval()
    random_model.tokenizer = model.tokenizer
    rows = {}
    for label, m in (("trained", model), ("random weights", random_model)):
        rows[label] = retrieval(*embed(m, videos, captions), args.group)
    print(f"{len(videos)} held-out windows, groups of {args.group} "
          f"(chance top-1 {1 / args.group:.3f}, top-5 {5 / args.group:.3f})")
    for label, row in rows.items():
        print(f"{label:15s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
