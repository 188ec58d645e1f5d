"""End-to-end behavior of the three stages on tiny data: one step each, loss falls, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prism_science.errors import CheckpointError, ConfigError, DataError
from prism_science.models import build_model, load_model, save_model
from prism_training import lit, stage1, stage2
from prism_training.config import apply_overrides, get_config


def _cfg(name: str, tiny: Path, out: Path, *extra: str):
    sets = [f"out_dir={out}", f"cache_dir={out.parent / 'cache'}"]
    if name.startswith("stage2"):
        sets.append(f"video_dir={tiny}")
    else:
        sets.append(f"manifest={tiny / 'manifest.jsonl'}")
    return apply_overrides(get_config(name), sets + list(extra))


@pytest.fixture(scope="module")
def stage1_run(tiny_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s1") / "run"
    summary = stage1.main(_cfg("stage1_test", tiny_videos, out, "total_steps=2"))
    assert summary["finished"] and summary["step"] == 2
    return out


def test_stage1_one_run_writes_weights_tokenizer_logs(stage1_run: Path) -> None:
    final = stage1_run / "final"
    model = load_model(final)
    assert model.tokenizer is not None
    assert model.config.vocabulary_size == model.tokenizer.vocab_size
    # Whole-word pieces: five words plus the "." that canonicalisation appends.
    assert len(model.tokenizer.encode("a red square moves right")) == 6
    logs = [json.loads(line) for line in (stage1_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logs)
    saved = json.loads((stage1_run / "train_config.json").read_text())
    assert saved["_class"] == "Stage1Config" and saved["total_steps"] == 2
    emb = model.encode_texts(["a red square moves right"])
    assert emb.shape == (1, model.model_dim)


def test_stage1_loss_falls_on_tiny_set(tiny_videos: Path, tmp_path: Path) -> None:
    cfg = _cfg("stage1_test", tiny_videos, tmp_path / "run", "total_steps=30", "batch_size=6",
               "lr=2e-3", "warmup_steps=3", "crop_scale_min=1.0", "ckpt_every=100")
    stage1.main(cfg)
    logs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    first = sum(r["loss"] for r in logs[:5]) / 5
    last = sum(r["loss"] for r in logs[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_stage2_one_step_and_architecture_checks(stage1_run: Path, tiny_videos: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "s2"
    summary = stage2.main(_cfg("stage2_test", tiny_videos, out, f"teacher={stage1_run}",
                               "total_steps=1"))
    assert summary["finished"]
    student = load_model(out / "final")
    teacher = load_model(stage1_run / "final")
    # The student moved away from the teacher it was initialised from; the text tower did not.
    s_state, t_state = student.state_dict(), teacher.state_dict()
    assert not torch.equal(s_state["vision_encoder.patch_projection.linear.weight"],
                           t_state["vision_encoder.patch_projection.linear.weight"])
    text_keys = [k for k in s_state if k.startswith("text_encoder.")]
    assert text_keys and all(torch.equal(s_state[k], t_state[k]) for k in text_keys)

    # A teacher of another architecture is refused, naming the differing fields.
    with pytest.raises(CheckpointError, match="architecture"):
        stage2.main(_cfg("stage2_test", tiny_videos, tmp_path / "bad", f"teacher={stage1_run}",
                         "model=prism-lvt-tiny-p16-f16-r128"))
    # A teacher without a text tower / pooler (plain encoder) is refused.
    plain = save_model(build_model("prism-test-p8-f4-r32"), tmp_path / "plain")
    with pytest.raises(CheckpointError, match="video-text"):
        stage2.main(_cfg("stage2_test", tiny_videos, tmp_path / "bad2", f"teacher={plain}"))
    with pytest.raises(CheckpointError, match="not a weights folder"):
        stage2.main(_cfg("stage2_test", tiny_videos, tmp_path / "bad3",
                         f"teacher={tmp_path / 'nowhere'}"))
    with pytest.raises(ConfigError, match="nothing to train"):
        stage2.main(_cfg("stage2_test", tiny_videos, tmp_path / "bad4", f"teacher={stage1_run}",
                         "token_distill=false", "global_distill=false"))
    with pytest.raises(ConfigError, match="motion_weight needs the decoder"):
        stage2.main(_cfg("stage2_test", tiny_videos, tmp_path / "bad5", f"teacher={stage1_run}",
                         "token_distill=false", "motion_weight=1"))


def test_stage2_motion_target_is_trained_and_logged(stage1_run: Path, tiny_videos: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "s2_motion"
    stage2.main(_cfg("stage2_test", tiny_videos, out, f"teacher={stage1_run}",
                     "motion_weight=0.5", "total_steps=2"))
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # The motion loss is part of the total, with its weight; it starts near 1 (the mean).
    first = logs[0]
    assert 0.2 < first["motion_loss"] < 5
    expected = first["token_loss"] + first["global_loss"] + 0.5 * first["motion_loss"]
    assert first["loss"] == pytest.approx(expected, rel=1e-5)


def test_lit_locks_the_encoder(stage1_run: Path, tiny_videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "lit"
    lit.main(_cfg("lit_test", tiny_videos, out, f"encoder={stage1_run}", "total_steps=2"))
    before = load_file(str(stage1_run / "final" / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    enc = [k for k in before if k.startswith("vision_encoder.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)
    changed = [k for k in before if k.startswith("text_encoder.")
               and not torch.equal(before[k], after[k])]
    assert changed
    model = load_model(out / "final")
    assert model.encode_texts(["a blue square"]).shape == (1, model.model_dim)


def test_resume_equals_uninterrupted(stage1_run: Path, tiny_videos: Path, tmp_path: Path) -> None:
    common = (f"teacher={stage1_run}", "total_steps=4", "ckpt_every=1")
    stage2.main(_cfg("stage2_test", tiny_videos, tmp_path / "full", *common))
    part = tmp_path / "part"
    first = stage2.main(_cfg("stage2_test", tiny_videos, part, *common, "stop_after_steps=2"))
    assert not first["finished"] and first["step"] == 2
    assert not (part / "final").exists()
    with pytest.raises(CheckpointError, match="--resume"):
        stage2.main(_cfg("stage2_test", tiny_videos, part, *common))
    # A run stopped early (budget spent) can still export what it has.
    early = stage2.main(_cfg("stage2_test", tiny_videos, part, *common, "stop_after_steps=2",
                             "export_on_stop=true"), resume=True)
    assert not early["finished"] and (part / "final" / "model.safetensors").is_file()
    second = stage2.main(_cfg("stage2_test", tiny_videos, part, *common), resume=True)
    assert second["finished"] and second["step"] == 4
    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(part / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # A config change is refused on resume; a corrupt checkpoint gives a clear error.
    with pytest.raises(ConfigError, match="mask_ratio"):
        stage2.main(_cfg("stage2_test", tiny_videos, part, *common, "mask_ratio=0.5"),
                    resume=True)
    ckpt = part / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        stage2.main(_cfg("stage2_test", tiny_videos, part, *common), resume=True)


def test_empty_caption_and_missing_videos(tiny_videos: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(tiny_videos / "clip0.mp4"), "caption": " "})
                        + "\n")
    with pytest.raises(DataError, match="caption is empty"):
        stage1.main(_cfg("stage1_test", tiny_videos, tmp_path / "r", f"manifest={manifest}"))
    rows = [{"path": str(tiny_videos / f"clip{k}.mp4"), "caption": "x"} for k in range(2)]
    rows += [{"path": str(tmp_path / "gone.mp4"), "caption": "missing"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"1 of 3 videos .*gone\.mp4"):
        stage1.main(_cfg("stage1_test", tiny_videos, tmp_path / "r2", f"manifest={manifest}"))


def test_teacher_per_frame_encodes_each_frame_alone(stage1_run: Path) -> None:
    cfg = apply_overrides(get_config("stage2_test"), [f"teacher={stage1_run}",
                                                      "teacher_per_frame=true"])
    teacher = stage2.load_teacher(cfg)
    objective = stage2.Stage2Objective(cfg, teacher, teacher.num_frames, teacher.image_size)
    torch.manual_seed(0)
    video = torch.rand(1, teacher.num_frames, teacher.image_size, teacher.image_size, 3)
    changed = video.clone()
    changed[:, 1:] = torch.rand_like(changed[:, 1:])  # every frame but the first
    n = objective.num_patches
    with torch.no_grad():
        tokens, tokens_changed = objective.teacher_tokens(video), objective.teacher_tokens(changed)
        alone = teacher(video[:, :1])  # frame 0 as a one-frame video
    assert tokens.shape == (1, teacher.num_frames * n, teacher.model_dim)
    torch.testing.assert_close(tokens[:, :n], tokens_changed[:, :n])
    torch.testing.assert_close(tokens[:, :n], alone)
    assert not torch.allclose(tokens[:, n:], tokens_changed[:, n:])
    # Without the switch the teacher's temporal layers mix frames: frame 0's tokens move.
    mixed = stage2.Stage2Objective(
        apply_overrides(cfg, ["teacher_per_frame=false"]), teacher, teacher.num_frames,
        teacher.image_size)
    with torch.no_grad():
        assert not torch.allclose(mixed.teacher_tokens(video)[:, :n],
                                  mixed.teacher_tokens(changed)[:, :n])
