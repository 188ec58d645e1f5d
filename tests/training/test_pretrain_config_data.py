"""Configs (registry, checked overrides, CLI) and data (manifests, cache, batches)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prism_science.cli.main import main as cli_main
from prism_science.errors import ConfigError, DataError
from prism_training.config import (
    Stage2Config,
    apply_overrides,
    get_config,
    list_configs,
    train_config_from_dict,
    train_config_to_dict,
)
from prism_training.data import (
    ClipSource,
    StepBatches,
    augment_clip,
    build_cache,
    list_videos,
    read_manifest,
)
from prism_training.engine import lr_at_step


def test_registry_overrides_and_round_trip() -> None:
    assert {"stage1_tiny", "stage2_tiny", "lit_tiny"} <= set(list_configs())
    cfg = apply_overrides(get_config("stage2_tiny"),
                          ["mask_ratio=0.8", "token_shuffle=false", "batch_size=4", "lr=1e-4"])
    assert isinstance(cfg, Stage2Config)
    assert (cfg.mask_ratio, cfg.token_shuffle, cfg.batch_size, cfg.lr) == (0.8, False, 4, 1e-4)
    assert get_config("stage2_tiny").mask_ratio == 0.75  # registry entries are not mutated
    assert train_config_from_dict(json.loads(json.dumps(train_config_to_dict(cfg)))) == cfg
    with pytest.raises(ConfigError, match="no field 'mask_ration'"):
        apply_overrides(cfg, ["mask_ration=0.5"])
    with pytest.raises(ConfigError, match="expected a int"):
        apply_overrides(cfg, ["batch_size=many"])
    with pytest.raises(ConfigError, match="not registered"):
        get_config("stage9")
    with pytest.raises(ConfigError, match="no field"):
        train_config_from_dict({**train_config_to_dict(cfg), "colour": 1})


def test_cli_reports_bad_configs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_main(["pretrain", "--list"]) == 0
    assert "stage2_tiny" in capsys.readouterr().out
    assert cli_main(["pretrain", "stage2", "--config", "stage2_tiny", "--set", "nope=1"]) == 1
    assert "no field 'nope'" in capsys.readouterr().err
    assert cli_main(["pretrain", "stage1", "--config", "stage2_tiny"]) == 1
    assert "is a stage2 config" in capsys.readouterr().err
    assert cli_main(["pretrain", "stage2", "--config", "stage2_tiny", "--out", str(tmp_path),
                     "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["out_dir"] == str(tmp_path)
    # --set takes several pairs at once, and repeats.
    assert cli_main(["pretrain", "stage2", "--config", "stage2_tiny", "--print-config",
                     "--set", "total_steps=7", "mask_ratio=0.9", "--set", "batch_size=3"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert (resolved["total_steps"], resolved["mask_ratio"], resolved["batch_size"]) == (7, 0.9, 3)


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = apply_overrides(get_config("stage1_test"),
                          ["total_steps=100", "warmup_steps=10", "lr=1e-3", "min_lr=1e-5"])
    lrs = [lr_at_step(cfg, s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05)


def test_manifests_csv_jsonl_and_errors(tiny_videos: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(f"path,caption,start,end\n{tiny_videos / 'clip0.mp4'},a red one,0.2,0.6\n"
                        "clip1.mp4,a green one,,\n")
    entries = read_manifest(csv_path)
    assert entries[0].start_s == 0.2 and entries[0].end_s == 0.6
    assert entries[1].path == tmp_path / "clip1.mp4"  # relative to the manifest's folder
    assert len(read_manifest(tiny_videos / "manifest.jsonl")) == 6
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "a.mp4", "caption": "ok"}\n{"path": "b.mp4", "caption": ""}\n')
    with pytest.raises(DataError, match=r"line 2 \(b\.mp4\): the caption is empty"):
        read_manifest(bad)
    assert read_manifest(bad, require_caption=False)[1].caption == ""
    bad.write_text('{"path": "a.mp4", "caption": "ok"}\n{not json\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        read_manifest(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "nothing.jsonl")
    with pytest.raises(DataError, match="no video file"):
        list_videos(tmp_path)


def test_cache_skips_or_fails_on_unreadable_videos(tiny_videos: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    entries = list_videos(tiny_videos)
    clips = build_cache(entries, tmp_path / "cache", 16)
    assert len(clips) == 6 and clips[0].frames().shape == (12, 16, 16, 3)
    again = build_cache(entries, tmp_path / "cache", 16)  # reused, same files
    assert [c.array_path for c in again] == [c.array_path for c in clips]
    mixed = entries[:3] + list_videos(tmp_path)
    with pytest.raises(DataError, match=r"1 of 4 videos .*broken\.mp4"):
        build_cache(mixed, tmp_path / "cache", 16, max_bad_fraction=0.1)
    assert len(build_cache(mixed, tmp_path / "cache", 16, max_bad_fraction=0.5)) == 3


def test_manifest_time_range_and_augmentation(tiny_videos: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(tiny_videos / "clip0.mp4"), "caption": "x",
                                    "start_frame": 4, "end_frame": 9}) + "\n")
    clips = build_cache(read_manifest(manifest), tmp_path / "cache", 16)
    assert (clips[0].start, clips[0].stop) == (4, 10)
    source = ClipSource(clips, num_frames=4, size=16)
    for seed in range(5):
        idx = source.frame_indices(0, np.random.default_rng(seed))
        assert idx.min() >= 4 and idx.max() <= 9 and np.all(np.diff(idx) == 1)
    frames = np.zeros((3, 20, 20, 3), np.uint8)
    frames[:, :, :10] = 255  # left half white
    out = augment_clip(frames, np.random.default_rng(0), 8, crop_scale_min=1.0)
    assert out.shape == (3, 8, 8, 3) and out.dtype == torch.float32
    assert out[:, :, 0].mean() > 0.9 and out[:, :, -1].mean() < 0.1  # no flip by default
    flipped = [augment_clip(frames, np.random.default_rng(s), 8, 1.0, allow_flip=True)
               for s in range(8)]
    assert any(f[:, :, 0].mean() < 0.1 for f in flipped)


def test_step_batches_are_deterministic_and_shard_by_rank(tiny_videos: Path,
                                                          tmp_path: Path) -> None:
    clips = build_cache(list_videos(tiny_videos), tmp_path / "cache", 16)
    source = ClipSource(clips, num_frames=4, size=16)
    whole = StepBatches(source, 4, seed=3, first_step=0, last_step=10)
    again = StepBatches(source, 4, seed=3, first_step=5, last_step=10)
    torch.testing.assert_close(whole[5]["video"], again[0]["video"])
    halves = [StepBatches(source, 4, 3, 0, 10, rank=r, world_size=2)[5] for r in range(2)]
    torch.testing.assert_close(torch.cat([h["video"] for h in halves]), whole[5]["video"])
    # One epoch visits every clip once.
    seen = torch.cat([whole[s]["index"] for s in range(3)])[:6]
    assert sorted(seen.tolist()) == list(range(6))
    with pytest.raises(DataError, match="not divisible"):
        StepBatches(source, 3, 0, 0, 1, rank=0, world_size=2)


def test_windows_per_clip_batches_group_windows_of_one_video(tiny_videos: Path,
                                                            tmp_path: Path) -> None:
    # Windows per video: clip0 five, clip1 four, clip2 two, clip3 one.
    counts = {"clip0.mp4": 5, "clip1.mp4": 4, "clip2.mp4": 2, "clip3.mp4": 1}
    rows = [{"path": str(tiny_videos / name), "caption": f"{name} {w}",
             "start_frame": w, "end_frame": w + 7}
            for name, n in counts.items() for w in range(n)]
    manifest = tmp_path / "windows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    clips = build_cache(read_manifest(manifest), tmp_path / "cache", 16)
    video_of = [Path(c.entry.path).name for c in clips]
    source = ClipSource(clips, num_frames=4, size=16)
    batches = StepBatches(source, 4, seed=1, first_step=0, last_step=3, windows_per_clip=2)
    epoch = torch.cat([batches[s]["index"] for s in range(3)]).tolist()
    assert sorted(epoch) == list(range(len(rows)))  # still one visit per window per epoch
    # Two groups from clip0, two from clip1, one from clip2: ten windows in same-video pairs,
    # then the two left over (clip0's fifth, clip3's only one).
    pairs = [epoch[i:i + 2] for i in range(0, 10, 2)]
    assert all(video_of[a] == video_of[b] for a, b in pairs)
    assert sorted(video_of[a] for a, _ in pairs) == ["clip0.mp4"] * 2 + ["clip1.mp4"] * 2 + [
        "clip2.mp4"]
    assert sorted(video_of[i] for i in epoch[10:]) == ["clip0.mp4", "clip3.mp4"]
    plain = StepBatches(source, 4, seed=1, first_step=0, last_step=3)
    assert torch.cat([plain[s]["index"] for s in range(3)]).tolist() != epoch
    with pytest.raises(DataError, match="windows_per_clip=3 must .* divide"):
        StepBatches(source, 4, 0, 0, 1, windows_per_clip=3)
    with pytest.raises(DataError, match="per-process batch \\(2\\)"):
        StepBatches(source, 4, 0, 0, 1, rank=0, world_size=2, windows_per_clip=4)
