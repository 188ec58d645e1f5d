"""Training paths: named configs are relative to a work directory, never to the package; the
recipe runs from the command line alone (windows, stage 1, stage 2, LiT)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import prism_training
from prism_science.cli.main import main as cli_main
from prism_science.errors import ConfigError, DataError
from prism_science.models import load_model
from prism_training import stage2
from prism_training.config import (
    apply_overrides,
    find_sample_data,
    get_config,
    list_configs,
    path_fields,
    resolve_config,
    resolve_paths,
)

PACKAGE_ROOT = Path(prism_training.__file__).resolve().parents[1]


def _paths(cfg) -> dict[str, str]:
    return {name: getattr(cfg, name) for name in path_fields(cfg) if getattr(cfg, name)}


def test_named_configs_resolve_under_the_workdir_not_the_package(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no sample_data/ here
    workdir = tmp_path / "work"
    for name in list_configs():
        stored = _paths(get_config(name))
        assert stored and all(not Path(p).is_absolute() for p in stored.values()), name
        resolved = _paths(resolve_config(get_config(name), workdir))
        for field, value in resolved.items():
            for part in value.split(","):
                assert Path(part).is_absolute(), (name, field, part)
                assert Path(part).is_relative_to(workdir), (name, field, part)
                assert not Path(part).is_relative_to(PACKAGE_ROOT), (name, field, part)
    cfg = resolve_config(get_config("stage1_video_tiny"), workdir)
    assert cfg.out_dir == str(workdir / "default" / "stage1_video")
    assert cfg.init_from == str(workdir / "default" / "stage1" / "final")
    assert cfg.manifest == str(workdir / "default" / "train_windows.jsonl")
    assert cfg.synth_dir == str(workdir / "synth_train")
    # The default work directory is ./runs of the current directory.
    assert resolve_config(get_config("lit_tiny")).encoder == str(
        tmp_path / "runs" / "default" / "stage2")
    # Default encoder v2's chain (docs/training.md): v1 -> stage 1 on crops -> stage 2 -> LiT.
    chain = [resolve_config(get_config(name), workdir)
             for name in ("stage1_crops_video", "stage2_crops", "lit_crops")]
    assert chain[0].init_from == str(workdir / "v1")
    assert chain[1].teacher == str(workdir / "crops" / "stage1_video") == chain[0].out_dir
    assert chain[2].encoder == str(workdir / "crops" / "stage2") == chain[1].out_dir
    assert chain[1].crop_manifest == ",".join(
        str(workdir / p) for p in ("synth_crops/crops.jsonl", "crops/real.jsonl"))
    assert chain[2].crop_manifest == str(workdir / "synth_crops" / "crops.jsonl")
    assert not chain[2].manifest and not chain[1].video_dir  # crops only


def test_overrides_are_relative_to_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(get_config("stage2_test"), "w",
                         ["teacher=models/t", "video_dir=a,/abs/b", f"out_dir={tmp_path / 'o'}"])
    assert cfg.teacher == str(tmp_path / "models" / "t")
    assert cfg.video_dir == f"{tmp_path / 'a'},/abs/b"
    assert cfg.out_dir == str(tmp_path / "o")
    assert cfg.cache_dir == str(tmp_path / "w" / "test" / "cache")  # from the config: workdir
    assert resolve_config(cfg, "elsewhere") == cfg  # resolving again changes nothing
    assert resolve_paths(apply_overrides(cfg, ["manifest="]), "x").manifest == ""  # unset


def test_sample_data_defaults_to_the_clone_only_when_present(tmp_path: Path, monkeypatch,
                                                             caplog) -> None:
    clone = tmp_path / "clone"
    (clone / "sample_data" / "fly").mkdir(parents=True)
    monkeypatch.chdir(clone)
    cfg = resolve_config(get_config("stage2_motion_tiny"))
    assert cfg.sample_data == str(clone / "sample_data")
    # Elsewhere (e.g. installed from a wheel): none, and the log says how to add them.
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="prism_training.config"):
        cfg = resolve_config(get_config("stage2_motion_tiny"))
    assert cfg.sample_data == ""
    assert "--sample-data DIR" in caplog.text and "stage2_motion_tiny" in caplog.text
    # Given explicitly, it is kept (and checked when the data is listed).
    given = resolve_config(get_config("stage2_tiny"), overrides=["sample_data=nowhere"])
    assert given.sample_data == str(tmp_path / "nowhere")
    assert find_sample_data(given) == given
    with pytest.raises(ConfigError, match=r"sample_data .*nowhere is not a folder.*--sample-data"):
        stage2.stage2_entries(apply_overrides(given, ["video_dir="]))


def test_cli_workdir_out_and_sample_data(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["pretrain", "stage2", "--config", "stage2_motion_tiny", "--workdir",
                     "/data/w", "--sample-data", "clone/sample_data", "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["out_dir"] == "/data/w/default/stage2"
    assert resolved["teacher"] == "/data/w/default/stage1_video"
    assert resolved["video_dir"] == "/data/w/synth_train"
    assert resolved["sample_data"] == str(tmp_path / "clone" / "sample_data")
    assert cli_main(["pretrain", "lit", "--config", "lit_tiny", "--out", "mine",
                     "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["out_dir"] == str(tmp_path / "mine")
    assert resolved["encoder"] == str(tmp_path / "runs" / "default" / "stage2")
    assert cli_main(["pretrain", "windows", "--config", "stage1_test", "--out", "x"]) == 1
    assert "--set manifest=PATH" in capsys.readouterr().err
    assert cli_main(["pretrain", "windows", "--config", "stage1_test"]) == 1
    err = capsys.readouterr().err
    assert "test/synth holds no NAME.json" in err and "prism-science synth" in err
    assert cli_main(["pretrain", "windows", "--config", "stage2_test"]) == 1
    assert "has no synth_dir" in capsys.readouterr().err
    with pytest.raises(DataError):  # the library function behind it, for completeness
        from prism_training.data import write_synth_window_manifest

        write_synth_window_manifest(tmp_path / "empty", tmp_path / "m.jsonl")


def test_recipe_runs_from_the_command_line_alone(tmp_path: Path, monkeypatch, capsys) -> None:
    """synth -> windows -> stage 1 -> stage 2 -> LiT with named configs and no paths given:
    everything lands under ./runs of the current directory, with absolute resolved configs."""
    monkeypatch.chdir(tmp_path)
    assert cli_main(["synth", "--n-videos", "3", "--out", "runs/test/synth", "--size", "32",
                     "--seconds", "2", "--seed", "0"]) == 0
    assert cli_main(["pretrain", "windows", "--config", "stage1_test"]) == 0
    out = capsys.readouterr().out
    assert "wrote 9 windows of 8 frames from 3 clips" in out
    windows = tmp_path / "runs" / "test" / "windows.jsonl"
    rows = [json.loads(line) for line in windows.read_text().splitlines()]
    assert len(rows) == 9 and not Path(rows[0]["path"]).is_absolute()  # portable manifest
    for step, config in (("stage1", "stage1_test"), ("stage2", "stage2_test"),
                         ("lit", "lit_test")):
        assert cli_main(["pretrain", step, "--config", config]) == 0, step
        run = tmp_path / "runs" / "test" / step
        assert f"{step} finished at step 4 in {run}" in capsys.readouterr().out
        saved = json.loads((run / "train_config.json").read_text())
        assert saved["out_dir"] == str(run)
        for field in path_fields(get_config(config)):
            assert saved[field] == "" or saved[field].startswith(str(tmp_path / "runs")), field
        assert load_model(run / "final").encode_texts(["a mouse rests"]).ndim == 2
    saved = json.loads((tmp_path / "runs" / "test" / "stage2" / "train_config.json").read_text())
    assert saved["teacher"] == str(tmp_path / "runs" / "test" / "stage1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
