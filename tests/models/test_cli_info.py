"""`prism-science info` and `prism-science models`."""

from __future__ import annotations

import pytest

from prism_science.cli.main import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "prism-science" in out and "torch" in out and "cpu" in out
    assert "prism-test-p8-f4-r32" in out


def test_models_table(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "params", "frames", "resolution", "weights"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["videoprism-v1-base-p18-f16-r288"][1:5] == ["video_encoder", "114.4M", "16",
                                                            "288px"]
    assert rows["videoprism-lvt-v1-large-p18-f8-r288"][1] == "video_text"


@pytest.mark.parametrize("command", ["info", "models", "convert-weights"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage" in capsys.readouterr().out
