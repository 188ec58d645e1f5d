"""Behaviors named in words on held-out synthetic clips: zero-shot vs few-shot prompt probes vs
linear and attention probes with the same labels, and the unseen-behavior split.

Clips come from the synthetic world (``generate_clip``, seeds 900000+, never trained on; two
animals, 128 px, 15 fps); a frame's labels are the behaviors either animal does. The model
(default: the bundled ``default`` LvT) embeds sliding 16-frame windows (``--hop``) once: its
per-frame contrastive embeddings (``frame_emb``, what prompt probes and zero-shot read) and its
2 x 2 pooled token grids (for the attention probe) are averaged over the windows that hold a
frame, as extraction does.

Arms, all scored by per-behavior average precision on every frame of the test clips:

- ``zero-shot``: each behavior's caption verb ("chases") in the template ensemble
  (``DEFAULT_TEMPLATES``), softmax over the ten behaviors (``prism-science probe zero-shot``);
- ``prompt`` / ``linear`` (frame embeddings) / ``attention`` (token grids): trained on
  n = 1, 2, 5, 10 labeled bouts per behavior drawn from the training clips (the frames of the
  drawn bouts are labeled for every behavior; all other frames are unlabeled), ``--repeats``
  draws each;
- unseen split: a prompt probe trained on every bout of five behaviors scores the other five by
  name, against zero-shot (softmax over the same five names).

    python benchmarks/prompt_probes.py --n-train 4 --n-test 3 --seconds 6 --hop 16 --repeats 1

Prints a table and writes ``--out`` (JSON). Never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from prism_science.evaluation.metrics import average_precision
from prism_science.pipeline.zero_shot import zero_shot_scores
from prism_science.probes import AttentionProbe, LinearProbe, PromptProbe
from prism_science.probes.prompt import DEFAULT_TEMPLATES, template_class_vectors
from prism_science.search import load_text_model
from prism_science.synth import BEHAVIORS, SynthConfig, generate_clip

# The verbs of the synthetic captions (prism_science.synth.world.make_caption): the words the
# default model's text tower was trained on.
NAMES = {"rest": "rests", "groom": "grooms", "walk": "walks", "approach": "approaches",
         "investigate": "investigates", "chase": "chases", "flee": "flees",
         "attack": "attacks", "defend": "defends itself", "mount": "mounts"}
SHOTS = (1, 2, 5, 10)
SEEN = ("rest", "walk", "approach", "chase", "attack")


def clips(n: int, first_seed: int, seconds: float) -> list:
    config = SynthConfig(size=(128, 128), fps=15.0, seconds=(seconds, seconds), n_animals=2)
    return [generate_clip(first_seed + i, config) for i in range(n)]


@torch.no_grad()
def embed(model: torch.nn.Module, frames: np.ndarray, hop: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) frame embeddings and (N, 2, 2, D) pooled token grids, averaged over windows."""
    n, t = len(frames), int(model.num_frames)
    starts = list(range(0, max(n - t, 0) + 1, hop))
    if starts[-1] != max(n - t, 0):
        starts.append(max(n - t, 0))
    d = int(model.model_dim)
    emb, grid, count = np.zeros((n, d)), np.zeros((n, 2, 2, d)), np.zeros(n)
    side = model.image_size // model.patch_size
    for s in starts:
        video = torch.from_numpy(frames[s:s + t]).float()[None] / 255.0
        out = model.forward_intermediates(video, return_layers=False)
        tokens = out["tokens"].reshape(1, t, side, side, d)[0].permute(0, 3, 1, 2)
        pooled = torch.nn.functional.adaptive_avg_pool2d(tokens, 2).permute(0, 2, 3, 1)
        emb[s:s + t] += out["frame_embeddings"][0].numpy()
        grid[s:s + t] += pooled.numpy()
        count[s:s + t] += 1
    return (emb / count[:, None]).astype(np.float32), (grid / count[:, None, None, None]).astype(
        np.float32)


def frame_labels(clip) -> np.ndarray:
    """(T, 10) int8: 1 where either animal does the behavior."""
    y = np.zeros((len(clip.behaviors), len(BEHAVIORS)), np.int8)
    for k in range(len(BEHAVIORS)):
        y[:, k] = (clip.behaviors == k).any(1)
    return y


def bouts(y: np.ndarray, groups: np.ndarray) -> list[list[tuple[int, int]]]:
    """Per behavior, (first row, last row) of each run of positives within one video."""
    out = []
    for k in range(y.shape[1]):
        runs, start = [], None
        for i in range(len(y) + 1):
            on = i < len(y) and y[i, k] == 1 and (start is None or groups[i] == groups[start])
            if on and start is None:
                start = i
            elif not on and start is not None:
                runs.append((start, i - 1))
                start = i if i < len(y) and y[i, k] == 1 else None
        out.append(runs)
    return out


def few_shot_labels(y: np.ndarray, runs: list, n: int, rng: np.random.Generator,
                    behaviors: list[int] | None = None) -> np.ndarray:
    """-1 everywhere but the frames of ``n`` drawn bouts per behavior (all columns known)."""
    labeled = np.zeros(len(y), bool)
    for k in (behaviors if behaviors is not None else range(y.shape[1])):
        if not runs[k]:
            continue
        for i in rng.choice(len(runs[k]), size=min(n, len(runs[k])), replace=False):
            labeled[runs[k][i][0]:runs[k][i][1] + 1] = True
    out = np.full(y.shape, -1, np.int8)
    out[labeled] = y[labeled]
    return out


def mean_ap(y: np.ndarray, scores: np.ndarray) -> float:
    ap = average_precision(y, scores)
    present = y.sum(0) > 0
    return float(np.nanmean(np.asarray(ap)[present]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--hop", type=int, default=8, help="frames between windows (16: none "
                        "overlap, half the encoder work)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-params", type=json.loads, default={},
                        help='PromptProbe parameters as JSON, e.g. \'{"n_layers": 0}\'')
    parser.add_argument("--cache", type=Path, default=None,
                        help="npz of the embeddings: read when present, else written")
    parser.add_argument("--out", type=Path, default=Path("runs/prompt_probes.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    model = load_text_model(args.model)
    names = [NAMES[b] for b in BEHAVIORS]

    data: dict[str, dict[str, np.ndarray]] = {}
    if args.cache is not None and args.cache.is_file():
        with np.load(args.cache) as cached:
            for key in cached.files:
                split, field = key.split("/")
                data.setdefault(split, {})[field] = cached[key]
    for split, n, seed in (("train", args.n_train, 900_000), ("test", args.n_test, 950_000)):
        if split in data:
            continue
        made = clips(n, seed, args.seconds)
        parts = [embed(model, c.frames, args.hop) for c in made]
        data[split] = {
            "emb": np.concatenate([p[0] for p in parts]),
            "grid": np.concatenate([p[1] for p in parts]),
            "y": np.concatenate([frame_labels(c) for c in made]),
            "groups": np.concatenate([np.full(len(c.frames), i) for i, c in enumerate(made)]),
        }
    if args.cache is not None and not args.cache.is_file():
        np.savez(args.cache, **{f"{split}/{field}": values for split, fields in data.items()
                                for field, values in fields.items()})
    train, test = data["train"], data["test"]
    embedded = time.perf_counter() - started
    logging.warning("embedded in %.0f s", embedded)
    present = test["y"].sum(0) > 0
    results: dict = {"model": args.model, "n_train_frames": len(train["y"]),
                     "n_test_frames": len(test["y"]), "embed_s": round(embedded, 1),
                     "test_positive_rate": dict(zip(BEHAVIORS, test["y"].mean(0).round(3).tolist(),
                                                    strict=True)),
                     "chance_mAP": float(test["y"].mean(0)[present].mean())}

    vectors = template_class_vectors(model, names, DEFAULT_TEMPLATES)
    zero = zero_shot_scores(test["emb"], vectors, len(names))  # as `probe zero-shot` writes
    results["zero-shot"] = mean_ap(test["y"], zero)
    results["zero-shot_per_behavior"] = dict(zip(
        BEHAVIORS, np.round(average_precision(test["y"], zero), 3).tolist(), strict=True))

    runs = bouts(train["y"], train["groups"])
    results["train_bouts"] = {b: len(r) for b, r in zip(BEHAVIORS, runs, strict=True)}
    common = {"max_epochs": args.epochs, "class_weight": "balanced", "validation_fraction": 0.0,
              "early_stopping": False, "tune_thresholds": False}
    for shots in SHOTS:
        logging.warning("%d-shot at %.0f s", shots, time.perf_counter() - started)
        row: dict[str, list[float]] = {"prompt": [], "linear": [], "attention": []}
        for repeat in range(args.repeats):
            rng = np.random.default_rng(100 * shots + repeat)
            y = few_shot_labels(train["y"], runs, shots, rng)
            labeled = (y >= 0).any(1)
            prompt = PromptProbe(random_state=repeat, **common, **args.prompt_params).fit(
                train["emb"], y, groups=train["groups"], behavior_names=names, text_model=model)
            row["prompt"].append(mean_ap(test["y"], prompt.predict_proba(
                test["emb"], groups=test["groups"])))
            linear = LinearProbe(random_state=repeat, **common).fit(
                train["emb"][labeled], y[labeled], behavior_names=names)
            row["linear"].append(mean_ap(test["y"], linear.predict_proba(test["emb"])))
            attention = AttentionProbe(random_state=repeat, **common).fit(
                train["grid"][labeled], y[labeled], behavior_names=names)
            row["attention"].append(mean_ap(test["y"], attention.predict_proba(test["grid"])))
        results[f"{shots}-shot"] = {k: [round(float(np.mean(v)), 4), round(float(np.std(v)), 4)]
                                    for k, v in row.items()}

    logging.warning("unseen split at %.0f s", time.perf_counter() - started)
    seen = [BEHAVIORS.index(b) for b in SEEN]
    unseen = [k for k in range(len(BEHAVIORS)) if k not in seen]
    y = train["y"][:, seen]
    probe = PromptProbe(random_state=0, **common, **args.prompt_params).fit(
        train["emb"], y, groups=train["groups"], behavior_names=[names[k] for k in seen],
        text_model=model)
    scored = probe.predict_behaviors(test["emb"], [names[k] for k in unseen],
                                     groups=test["groups"], text_model=model)
    results["unseen"] = {
        "seen": list(SEEN), "unseen": [BEHAVIORS[k] for k in unseen],
        "prompt_probe_on_unseen": mean_ap(test["y"][:, unseen], scored),
        "zero_shot_on_unseen": mean_ap(test["y"][:, unseen], zero_shot_scores(
            test["emb"], vectors[unseen], len(unseen))),
        "prompt_probe_on_seen": mean_ap(test["y"][:, seen], probe.predict_proba(
            test["emb"], groups=test["groups"])),
        "chance_unseen": float(test["y"][:, unseen].mean(0)[present[unseen]].mean()),
    }
    results["prompt_params"] = args.prompt_params
    results["total_s"] = round(time.perf_counter() - started, 1)

    print(f"model {args.model}: {results['n_train_frames']} train / {results['n_test_frames']} "
          f"test frames, embedded in {embedded:.0f} s; test mAP over behaviors present")
    print(f"chance {results['chance_mAP']:.3f}   zero-shot {results['zero-shot']:.3f}")
    print(f"{'bouts/behavior':>15} {'prompt':>14} {'linear':>14} {'attention':>14}")
    for shots in SHOTS:
        r = results[f"{shots}-shot"]
        print(f"{shots:>15} " + " ".join(f"{r[k][0]:>7.3f} +-{r[k][1]:.3f}"
                                         for k in ("prompt", "linear", "attention")))
    u = results["unseen"]
    print(f"unseen split (train on {', '.join(u['seen'])}): prompt probe on the unseen "
          f"{u['prompt_probe_on_unseen']:.3f}, zero-shot {u['zero_shot_on_unseen']:.3f}, "
          f"chance {u['chance_unseen']:.3f}; on the seen {u['prompt_probe_on_seen']:.3f}")
    print(f"total {results['total_s']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
