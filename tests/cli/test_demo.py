"""The main job end to end on a tiny stand-in for sample_data, with the tiny test encoder."""

from __future__ import annotations

import av
import numpy as np
import pytest

from prism_science.demo import DemoOptions, alternate_blocks, read_fly_frame_labels, run_demo
from prism_science.errors import PrismError


def _write_sample_dir(root, n_frames=160):
    """A 'fly clip' whose label turns on when a bright square is shown, and its label CSV."""
    folder = root / "fly_courtship"
    folder.mkdir(parents=True)
    flags = np.zeros(n_frames, dtype=int)
    for start in (20, 70, 120):  # one bout in each 50-frame labeled/held-out block pair
        flags[start:start + 15] = 1
    with av.open(str(folder / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            image = np.full((64, 64, 3), 40, dtype=np.uint8)
            if flags[i]:
                image[16:48, 16:48] = 230
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    lines = ["frame,male_wingL_angle_deg,male_wingR_angle_deg,male_wing_extension,"
             "male_female_thorax_dist_px,male_facing_female_deg"]
    lines += [f"{i},0,0,{flags[i]},100,0" for i in range(n_frames)]
    (folder / "clip_heuristic_labels.csv").write_text("\n".join(lines) + "\n")
    return root, flags


def test_demo_writes_store_reports_and_ethogram(tmp_path):
    sample_dir, flags = _write_sample_dir(tmp_path / "sample")
    options = DemoOptions(out=tmp_path / "out", model="prism-test-p8-f4-r32",
                          sample_dir=sample_dir, n_synthetic=0, probe="linear",
                          block_frames=25, hop=4, device="cpu")
    result = run_demo(options)

    assert (tmp_path / "out" / "store.zarr").is_dir()
    report_dir = result.reports["fly"]
    for name in ("report.json", "report.md", "report.html"):
        assert (report_dir / name).is_file()
    assert result.ethograms and all(p.is_file() for p in result.ethograms)
    (row,) = result.rows
    assert row["behavior"] == "wing_extension"
    assert row["frames"] == 75  # the odd 25-frame blocks of 160 frames are held out
    # The held-out blocks hold 30 positive frames of 75 (chance AP 0.4); the bright square is
    # plain to any encoder, so a probe that learned it ranks the bouts first.
    chance = flags[~alternate_blocks(160, 25)].mean()
    assert chance == pytest.approx(0.4)
    assert row["ap"] > 0.9
    assert "wing_extension" in result.table()


def test_demo_without_sample_data_says_where_it_looked(tmp_path):
    options = DemoOptions(out=tmp_path / "out", sample_dir=tmp_path / "missing")
    with pytest.raises(PrismError, match="sample data not found.*--sample-dir"):
        run_demo(options)


def test_fly_labels_and_blocks(tmp_path):
    sample_dir, flags = _write_sample_dir(tmp_path / "sample", n_frames=40)
    labels = read_fly_frame_labels(sample_dir / "fly_courtship" / "clip_heuristic_labels.csv")
    np.testing.assert_array_equal(labels, flags)
    blocks = alternate_blocks(10, 3)
    assert blocks.tolist() == [True] * 3 + [False] * 3 + [True] * 3 + [False]


def test_fly_labels_with_wrong_columns_name_the_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("frame,something\n0,1\n")
    with pytest.raises(PrismError, match="labels.csv.*male_wing_extension"):
        read_fly_frame_labels(path)
