"""Videos whose container says one thing and whose frames another.

A truncated MKV (its header declares 90 frames, 45 remain), a display matrix that rotates the
picture (-90 and +90 degrees: phones), and time stamps that go back although every frame
decodes. Each video is written here with PyAV.
"""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import VideoError
from prism_science.extraction.jobs import SHORT_VIDEO_ITEM
from prism_science.store import open_store
from prism_science.video import open_video

ROBUSTNESS_TITLE = "Bad videos"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| an MKV cut at half (declares 90 frames, about 45 remain) | `info.declared_frames == 90`,
  `info.short`, a warning naming both counts; `extract` extracts the readable frames, prints
  `SHORT cut.mkv: N of the 90 frames ...`, exits 3 and records `source/short` in the store; the
  whole file exits 0 |
| a display matrix rotating by -90, 90 or 180 degrees | `info.rotation` set; frames come out as
  ffmpeg shows them (160x96 stored reads 96x160, the corner block where ffmpeg puts it) in
  `get_frame`, `get_frames` (resized) and `iter_chunks`; crops in the rotated frame |
| time stamps that go back (two frames swapped) with no B-frames, in MKV | every frame read once
  in decode order, timestamps from the nominal rate, a warning "time stamps go back at frame 6"
  |
| the same in MP4 (the codec may reorder) | read whole in decode order, or `VideoError` "time
  stamps out of order" naming the file and frame; never "damaged" |
"""

MODEL = "prism-test-p8-f4-r32"
EXTRACT = ("--model", MODEL, "--hop", "4", "--no-progress")


def _write(path, n=90, width=160, height=96, rotation=None, pts_of=None, bframes=None):
    """An h264 video whose frame i has green level 2*i and a white 20x10 block at the top left;
    ``pts_of(i)`` replaces frame i's time stamp (in frames), DTS kept rising."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": "10", **({"bf": str(bframes)} if bframes is not None else {})}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        packets = []
        for i in range(n):
            image = np.zeros((height, width, 3), np.uint8)
            image[..., 1] = 2 * i
            image[:10, :20] = 255
            packets += stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24"))
        packets += stream.encode()
        for packet in packets:
            if pts_of is not None:
                k = int(packet.pts * 30 * packet.time_base + 0.5)
                packet.pts = int(round(pts_of(k) / 30 / packet.time_base))
                packet.dts = int(round((k - 12) / 30 / packet.time_base))
            container.mux(packet)
    return path


@pytest.fixture()
def truncated(tmp_path):
    full = _write(tmp_path / "full.mkv")
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    return full, cut


def test_truncated_mkv_is_reported_short(truncated, tmp_path, caplog, capsys):
    full, cut = truncated
    with caplog.at_level(logging.WARNING), open_video(cut) as reader:
        info = reader.info
    assert info.declared_frames == 90 and 30 < info.n_frames < 60 and info.short
    assert any("cut.mkv" in r.getMessage() and "declares 90 frames" in r.getMessage()
               for r in caplog.records)
    with open_video(full) as reader:
        assert reader.info.declared_frames == 90 and reader.info.n_frames == 90
        assert not reader.info.short

    store_path = tmp_path / "s.zarr"
    capsys.readouterr()
    assert main(["extract", str(full), "--out", str(store_path), *EXTRACT]) == 0
    assert "SHORT" not in capsys.readouterr().out
    # the short video: extracted (not a failure), reported, exit code 3, recorded in the store
    assert main(["extract", str(cut), "--out", str(store_path), *EXTRACT]) == 3
    out = capsys.readouterr().out
    assert "1 extracted" in out and "0 failed" in out
    assert f"SHORT cut.mkv: {info.n_frames} of the 90 frames its container declares" in out
    with open_store(store_path, "r") as store:
        assert store.feature_status("cut.mkv", f"{MODEL}/mean") == "complete"
        assert store.read_json("cut.mkv", SHORT_VIDEO_ITEM) == {
            "declared_frames": 90, "readable_frames": info.n_frames}
        assert not store.has_item("full.mkv", SHORT_VIDEO_ITEM)
        assert store.video_info("cut.mkv").n_frames == info.n_frames


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_rotation_is_applied_as_players_show_it(tmp_path, rotation):
    path = _write(tmp_path / f"r{rotation}.mp4", n=12, rotation=rotation)
    with open_video(path) as reader:
        info = reader.info
        frame = reader.get_frame(3)
        chunks = np.concatenate([c for _, c in reader.iter_chunks(5)])
        small = reader.get_frames([3], size=(80, 48))
        crop = reader.get_frame(3, crop=(0, 0, 48, 40))
    assert info.rotation == rotation
    expected = {-90: (96, 160), 90: (96, 160), 180: (160, 96)}[rotation]
    assert (info.width, info.height) == expected and frame.shape == (expected[1], expected[0], 3)
    white = frame[..., 0] > 128
    ys, xs = np.nonzero(white)
    # where ffmpeg's autorotation (what players show) puts the top-left block
    box = {-90: ((0, 19), (86, 95)), 90: ((140, 159), (0, 9)), 180: ((86, 95), (140, 159))}
    (y0, y1), (x0, x1) = box[rotation]
    assert abs(ys.min() - y0) <= 1 and abs(ys.max() - y1) <= 1
    assert abs(xs.min() - x0) <= 1 and abs(xs.max() - x1) <= 1
    np.testing.assert_array_equal(chunks[3], frame)
    assert small.shape == (1, 80, 48, 3) and crop.shape == (40, 48, 3)


def test_no_rotation_is_unchanged(tmp_path):
    with open_video(_write(tmp_path / "plain.mp4", n=4)) as reader:
        assert reader.info.rotation == 0 and (reader.info.width, reader.info.height) == (160, 96)
        assert reader.get_frame(0)[:10, :20, 0].min() > 128


def test_time_stamps_going_back_are_read_in_decode_order_with_a_warning(tmp_path, caplog):
    # no B-frames: the decoder hands out frames in decode order; frame 6's stamp is before 5's
    path = _write(tmp_path / "swap.mkv", n=30, width=64, height=48, bframes=0,
                  pts_of=lambda k: {5: 6, 6: 5}.get(k, k))
    with caplog.at_level(logging.WARNING), open_video(path) as reader:
        frames = reader.get_frames(range(30))
        assert reader.info.n_frames == 30
        np.testing.assert_allclose(reader.info.timestamps, np.arange(30) / 30)
    green = frames[:, 20, 40, 1].astype(int)
    assert (np.diff(green) > 0).all()  # decode order: every frame, each once
    assert any("swap.mkv" in r.getMessage() and "go back at frame 6" in r.getMessage()
               for r in caplog.records)


def test_time_stamps_out_of_order_in_a_reordering_stream_name_the_frame(tmp_path):
    path = _write(tmp_path / "swap.mp4", n=30, width=64, height=48, bframes=0,
                  pts_of=lambda k: {5: 6, 6: 5}.get(k, k))
    with open_video(path) as reader:
        try:
            frames = reader.get_frames(range(30))
        except VideoError as exc:  # refused, with the right diagnosis
            assert "out of order" in str(exc) and "damaged" not in str(exc)
            assert "frame 5" in str(exc) or "frame 6" in str(exc)
            assert "swap.mp4" in str(exc)
        else:  # or read whole, in decode order
            assert (np.diff(frames[:, 20, 40, 1].astype(int)) > 0).all()
