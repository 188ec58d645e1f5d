"""The animal-centred recipe in miniature, end to end: synthetic per-animal crops and "real"
videos with tracks (a tracks file, and the built-in tracker), stage 1 killed and resumed to the
same weights as an uninterrupted run, stage 2 from the command line, then LiT."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from prism_science.cli.main import main as cli_main
from prism_science.models import load_model
from prism_science.synth import SynthConfig, generate_dataset, write_animal_windows
from prism_training import lit, stage1
from prism_training.config import apply_overrides, get_config
from tests.training.test_crop_data import write_arena, write_manifest


def test_crops_recipe_runs_and_resumes_exactly(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    work = tmp_path / "runs"
    synth = work / "test" / "synth_crops"
    generate_dataset(synth, 2, seed=1, config=SynthConfig(size=(96, 96), fps=8.0,
                                                         seconds=(3.0, 3.0), n_animals=2))
    write_animal_windows(synth, window=8)
    real = work / "test" / "real"
    real.mkdir()
    write_arena(real, "tracked", 60)
    write_arena(real, "untracked", 60, tracks=False, seed=3)
    write_manifest(work / "test" / "crops_real.jsonl", [
        {"path": "real/tracked.mp4", "tracks": "real/tracked.tracks.csv"},
        {"path": "real/untracked.mp4", "tracks": "auto", "n_animals": 2}])

    # stage 1 on the synthetic crops: uninterrupted, and killed after step 2 then resumed
    full = stage1.main(get_config("stage1_crops_test"), workdir=work)
    assert full["finished"] and full["step"] == 4
    part_cfg = apply_overrides(get_config("stage1_crops_test"), ["out_dir=test/part"])
    cut = stage1.main(apply_overrides(part_cfg, ["stop_after_steps=2"]), workdir=work)
    assert not cut["finished"] and cut["step"] == 2
    done = stage1.main(part_cfg, resume=True, workdir=work)
    assert done["finished"] and done["step"] == 4
    a = load_file(str(work / "test" / "crops_stage1" / "final" / "model.safetensors"))
    b = load_file(str(work / "test" / "part" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    saved = json.loads((work / "test" / "part" / "train_config.json").read_text())
    assert saved["crop_manifest"] == str(synth / "crops.jsonl")

    # stage 2 from the command line on synthetic and real crops (one tracked on the fly)
    code = cli_main(["pretrain", "stage2", "--config", "stage2_crops_test", "--workdir",
                     str(work)])
    assert code == 0
    assert list((work / "test" / "crops_real.tracks").glob("untracked-*.tracks.csv"))
    log = [json.loads(line) for line in
           (work / "test" / "crops_stage2" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and "motion_loss" in log[-1] and "token_loss" in log[-1]
    model = load_model(work / "test" / "crops_stage2" / "final")
    assert model.encode_video(torch.rand(1, 4, 32, 32, 3)).shape == (1, model.model_dim)

    # LiT on the per-animal captions, the encoder locked
    lit_cfg = apply_overrides(get_config("lit_test"), [
        "manifest=", "crop_manifest=test/synth_crops/crops.jsonl", "out_dir=test/crops_lit",
        "encoder=test/crops_stage2", "frame_stride=2"])
    assert lit.main(lit_cfg, workdir=work)["finished"]
    a = load_file(str(work / "test" / "crops_stage2" / "final" / "model.safetensors"))
    b = load_file(str(work / "test" / "crops_lit" / "final" / "model.safetensors"))
    encoder = [k for k in a if k.startswith("vision_encoder.")]
    assert encoder and all(torch.equal(a[k], b[k]) for k in encoder)
