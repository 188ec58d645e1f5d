"""Miniature datasets in each benchmark's exact released layout, and a tiny weights folder.

Videos are a few dozen 48 x 32 frames; each labeled behavior brightens one colour channel, so
that the tiny random-weights model's tokens carry the label and a probe can learn something.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from prism_science.models import build_model
from prism_science.models.folder import save_model

SIZE = (32, 48)  # height, width
FVF_BEHS = ["touch", "lunge", "tussle", "hold", "wing threat", "wing extension", "circle",
            "copul attempt", "copulation"]
CHIMP_TRAIN = ["Azibo_ObsChimp_2016_01_01_clip_0_1000", "Azibo_ObsChimp_2016_01_02_clip_0_1000"]
CHIMP_TEST = ["Azibo_ObsChimp_2015_11_25_d_clip_1000_2000"]  # in the official test list


def frames_for(labels: np.ndarray, seed: int) -> np.ndarray:
    """(T, H, W, 3) uint8: noise, plus a bright channel while label k (0, 1, 2...) holds."""
    rng = np.random.default_rng(seed)
    t = len(labels)
    frames = rng.integers(0, 60, (t, *SIZE, 3)).astype(np.uint8)
    for i, k in enumerate(labels):
        if k >= 0:
            frames[i, :, :, k % 3] = 200
            frames[i, : 8 * (1 + k // 3), :, :] = 255
    return frames


def write_video(path: Path, frames: np.ndarray, fps: int = 30) -> Path:
    """An mpeg4 video (mp4 or avi) of the frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = SIZE[1], SIZE[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine the second
    one spin-waits (15x slower steps, measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A weights folder of the tiny test encoder (fixed random weights, with an identity)."""
    folder = tmp_path_factory.mktemp("weights") / "prism-test-p8-f4-r32"
    save_model(build_model("prism-test-p8-f4-r32"), folder)
    return folder


@pytest.fixture
def quick_probe(tmp_path) -> Path:
    """A probe config for seconds-long runs: the paper's probe, fewer epochs."""
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"epochs": 4, "batch_size": 8, "learning_rate": 1e-3}))
    return path


def _fvf_bouts(labels: np.ndarray, names: list[str]) -> np.ndarray:
    bouts = np.empty((2, len(FVF_BEHS)), dtype=object)
    for fly in range(2):
        for b, name in enumerate(FVF_BEHS):
            frames = np.flatnonzero(labels == names.index(name)) if (
                fly == 0 and name in names) else np.array([], int)
            runs = []
            for f in frames:
                if runs and runs[-1][1] == f:  # f is 0-based; runs hold 1-based ends
                    runs[-1][1] = f + 1
                else:
                    runs.append([f + 1, f + 1])
            bouts[fly, b] = np.array(runs, float).reshape(-1, 2)
    return bouts


@pytest.fixture
def fvf_root(tmp_path) -> Path:
    """Aggression/Aggression/movie1..3: both namings, 40 frames each; movie3 is the test."""
    root = tmp_path / "flyvsfly"
    names = ["lunge", "wing extension", "circle"]
    behs = np.empty((1, len(FVF_BEHS)), dtype=object)
    behs[0, :] = FVF_BEHS
    for i in range(1, 4):
        labels = np.full(40, -1)
        labels[5:15], labels[20:28], labels[30:36] = 0, 1, 2
        labels = np.roll(labels, 3 * i)
        movie = root / "Aggression" / "Aggression" / f"movie{i}"
        write_video(movie / f"movie{i}.avi", frames_for(labels, i))
        separator = "_" if i != 2 else "-"  # the 2014 naming and FlyTracker's
        savemat(movie / f"movie{i}{separator}actions.mat",
                {"behs": behs, "bouts": _fvf_bouts(labels, names)})
    return root


def _calms21_sequence(labels: np.ndarray) -> dict:
    t = len(labels)
    return {"keypoints": np.zeros((t, 2, 2, 7)).tolist(), "scores": np.ones((t, 2, 7)).tolist(),
            "annotations": labels.tolist(),
            "metadata": {"annotator-id": 0,
                         "vocab": {"attack": 0, "investigation": 1, "mount": 2, "other": 3}}}


@pytest.fixture
def calms21_root(tmp_path) -> Path:
    """task1 train (2 sequences) / test (1 sequence) JSON + task1_videos_mp4/<split>/."""
    root = tmp_path / "calms21"
    labels_dir = root / "task1_classic_classification"
    labels_dir.mkdir(parents=True)
    plan = {"train": ["mouse001_task1_annotator1", "mouse002_task1_annotator1"],
            "test": ["mouse003_task1_annotator1"]}
    seed = 0
    for subset, names in plan.items():
        sequences = {}
        for name in names:
            seed += 1
            labels = np.full(40, 3)
            labels[4:12], labels[16:26], labels[30:37] = 0, 1, 2
            labels = np.roll(labels, 2 * seed)
            write_video(root / "task1_videos_mp4" / subset / f"{name}.mp4",
                        frames_for(np.where(labels == 3, -1, labels), seed))
            sequences[f"task1/{subset}/{name}"] = _calms21_sequence(labels)
        (labels_dir / f"calms21_task1_{subset}.json").write_text(
            json.dumps({"annotator-id_0": sequences}))
    return root


def _chimp_json(clip: str, n_keyframes: int, seed: int) -> tuple[dict, np.ndarray]:
    """Raw per-clip COCO JSON: 2 chimps per keyframe; frame 10*k shows chimp 1's behavior."""
    rng = np.random.default_rng(seed)
    images, annotations, labels = [], [], np.full(10 * n_keyframes, -1)
    for k in range(n_keyframes):
        images.append({"id": 100 + k, "file_name": f"{clip}/{k:06d}.jpg", "height": SIZE[0],
                       "width": SIZE[1]})
        behavior = int(rng.integers(0, 3))
        labels[10 * k : 10 * k + 10] = behavior
        for chimp, (box, behaviors) in enumerate([([2, 2, 20, 26], [behavior, 20]),
                                                  ([24, 4, 20, 24], [2 + behavior % 2])]):
            annotations.append({"id": 1000 + 10 * k + chimp, "image_id": 100 + k,
                                "bbox": box, "bbox_id": chimp + 1, "bbox_vis": 1,
                                "behaviors": behaviors, "keypoints": []})
    return {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "chimpanzee"}],
            "images": images, "annotations": annotations}, labels


@pytest.fixture
def chimpact_root(tmp_path) -> Path:
    """ChimpACT_release: videos_full/<clip>.mp4, labels/<clip>.json (raw), action_list.txt."""
    root = tmp_path / "ChimpACT_release"
    (root / "labels").mkdir(parents=True)
    (root / "action_list.txt").write_text("moving\nclimbing\nresting\n")
    for seed, clip in enumerate(CHIMP_TRAIN + CHIMP_TEST):
        data, labels = _chimp_json(clip, 4, seed)
        write_video(root / "videos_full" / f"{clip}.mp4", frames_for(labels, seed))
        (root / "labels" / f"{clip}.json").write_text(json.dumps(data))
    return root


@pytest.fixture
def kabr_root(tmp_path) -> Path:
    """annotation/{classes.json,train.csv,val.csv} + dataset/image/<code>/<n>.jpg."""
    root = tmp_path / "KABR"
    (root / "annotation").mkdir(parents=True)
    classes = {"Walk": 0, "Graze": 1, "Browse": 2, "Head Up": 3, "Auto-Groom": 4, "Trot": 5,
               "Run": 6, "Occluded": 7}
    (root / "annotation" / "classes.json").write_text(json.dumps(classes))
    plan = {"train": ["G0001", "Z0002"], "val": ["G0003"]}
    number = 0
    for subset, codes in plan.items():
        lines = ["original_vido_id video_id frame_id path labels"]
        for code in codes:
            number += 1
            labels = np.repeat([0, 1, 3], 10)
            labels = np.roll(labels, 4 * number)
            folder = root / "dataset" / "image" / code
            folder.mkdir(parents=True)
            for i, image in enumerate(frames_for(labels, number)):
                Image.fromarray(image).save(folder / f"{i + 1}.jpg", quality=95)
                lines.append(f"{code} {number} {i + 1} {code}/{i + 1}.jpg {labels[i]}")
        (root / "annotation" / f"{subset}.csv").write_text("\n".join(lines) + "\n")
    return root
