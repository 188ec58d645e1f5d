"""prism_science.video: exact frame counts, timestamps, frame-accurate seeks, chunks, bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from prism_science.errors import VideoError
from prism_science.video import content_hash, open_video
from prism_science.video.index import natural_sort_key

H, W = 48, 64


def _pattern(i: int) -> np.ndarray:
    """A frame that differs clearly from its neighbours: moving bar + index-coded grey level."""
    frame = np.full((H, W, 3), 40 + (i * 7) % 180, dtype=np.uint8)
    x = (i * 3) % (W - 8)
    frame[8:40, x : x + 8] = (250, 30, 30)
    frame[:6, : (i % W) + 1] = (20, 200, 20)
    return frame


def _write(
    path: Path,
    n: int,
    *,
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 1000),
    gop: int = 12,
    bframes: int = 3,
    fmt: str | None = None,
) -> Path:
    """h264 with B-frames and keyframes every `gop` frames; `pts` gives variable frame rate."""
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "bf": str(bframes),
                          "sc_threshold": "0", "crf": "18"}
        if pts is not None:
            stream.codec_context.time_base = time_base
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_pattern(i), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _sequential(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def bframes_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("v") / "bframes.mp4", 75, gop=24, bframes=3)


def test_counts_timestamps_and_info(bframes_video: Path) -> None:
    with open_video(bframes_video) as reader:
        info = reader.info
        assert info.n_frames == 75 == len(reader)
        assert (info.width, info.height, info.codec) == (W, H, "h264")
        assert info.fps == pytest.approx(25.0)
        np.testing.assert_allclose(info.timestamps, np.arange(75) / 25.0, atol=1e-9)
        assert info.duration == pytest.approx(3.0)
        assert info.last_good_frame == 74
        assert info.shape == (75, H, W, 3)


def test_random_access_equals_sequential_decoding(bframes_video: Path) -> None:
    truth = _sequential(bframes_video)
    rng = np.random.default_rng(0)
    order = [74, 0, 73, 30, 29, 31, 48, 47, 5, 60, 12, 11] + rng.integers(0, 75, 20).tolist()
    with open_video(bframes_video, cache_size=0) as reader:
        for i in order:
            np.testing.assert_array_equal(reader.get_frame(i), truth[i], err_msg=f"frame {i}")
        np.testing.assert_array_equal(reader.get_frame(-1), truth[-1])


def test_single_gop_b_pyramid_random_access(tmp_path: Path) -> None:
    """One keyframe for the whole video (GOP longer than the video), B-frame pyramid."""
    path = _write(tmp_path / "longgop.mp4", 60, gop=300, bframes=4)
    truth = _sequential(path)
    with open_video(path, cache_size=4) as reader:
        for i in [59, 1, 33, 32, 58, 0, 45]:
            np.testing.assert_array_equal(reader.get_frame(i), truth[i], err_msg=f"frame {i}")


def test_sequential_access_does_not_seek_and_cache_serves_scrubbing(bframes_video: Path) -> None:
    with open_video(bframes_video, cache_size=16) as reader:
        for i in range(40):
            reader.get_frame(i)
        assert reader.seeks == 0
        before = reader.seeks
        for i in range(39, 28, -1):  # scrub back within the cache: no decoding at all
            reader.get_frame(i)
        assert reader.seeks == before


def test_get_frames_keeps_order_and_repeats(bframes_video: Path) -> None:
    truth = _sequential(bframes_video)
    with open_video(bframes_video) as reader:
        got = reader.get_frames([50, 3, 50, 70, 4])
    assert got.shape == (5, H, W, 3) and got.dtype == np.uint8
    for row, i in zip(got, [50, 3, 50, 70, 4], strict=True):
        np.testing.assert_array_equal(row, truth[i])


def test_iter_chunks_ranges_resize_and_crop(bframes_video: Path) -> None:
    truth = np.stack(_sequential(bframes_video))
    with open_video(bframes_video) as reader:
        chunks = list(reader.iter_chunks(16, start=30, stop=70))
        assert [start for start, _ in chunks] == [30, 46, 62]
        np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), truth[30:70])
        small = np.concatenate([c for _, c in reader.iter_chunks(32, size=(24, 32))])
        assert small.shape == (75, 24, 32, 3)
        # area interpolation: a 2x downscale is close to the 2x2 block mean
        block = truth.reshape(75, 24, 2, 32, 2, 3).mean(axis=(2, 4))
        assert np.abs(small.astype(float) - block).mean() < 6.0
        crop = next(reader.iter_chunks(4, 10, 14, crop=(8, 4, 40, 36)))[1]
        np.testing.assert_array_equal(crop, truth[10:14, 4:36, 8:40])
        crop_small = reader.get_frame(10, size=(16, 16), crop=(8, 4, 40, 36))
        assert crop_small.shape == (16, 16, 3)
        assert list(reader.iter_chunks(8, 20, 20)) == []


def test_variable_frame_rate_timestamps_come_from_pts(tmp_path: Path) -> None:
    pts = [0, 40, 80, 200, 240, 500, 540, 580, 620, 1000, 1040, 1080, 1120, 1160, 1200]
    path = _write(tmp_path / "vfr.mkv", len(pts), pts=pts, gop=5, bframes=2, fmt="matroska")
    truth = _sequential(path)
    with open_video(path) as reader:
        assert reader.info.n_frames == len(pts)
        np.testing.assert_allclose(reader.info.timestamps, np.array(pts) / 1000.0, atol=1e-6)
        assert reader.info.fps == pytest.approx((len(pts) - 1) / 1.2)
        for i in [14, 3, 9, 0, 5]:
            np.testing.assert_array_equal(reader.get_frame(i), truth[i])


@pytest.mark.parametrize(
    ("name", "fmt", "codec"),
    [("raw.h264", "h264", "libx264"), ("stream.ts", "mpegts", "libx264"),
     ("motion.avi", "avi", "mjpeg"), ("part2.avi", "avi", "mpeg4")],
)
def test_other_containers_seek_exactly(tmp_path: Path, name: str, fmt: str, codec: str) -> None:
    """Raw streams have no time stamps; MPEG-TS seeks land imprecisely; AVI keeps DTS only."""
    path = tmp_path / name
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = W, H
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.options = {"g": "8", "bf": "2"} if codec != "mjpeg" else {}
        for i in range(40):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_pattern(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    truth = _sequential(path)
    assert len(truth) == 40
    with open_video(path, cache_size=0) as reader:
        assert reader.info.n_frames == 40
        np.testing.assert_allclose(reader.info.timestamps, np.arange(40) / 25, atol=1e-6)
        for i in [35, 2, 27, 26, 39, 0, 17]:
            np.testing.assert_array_equal(reader.get_frame(i), truth[i], err_msg=f"frame {i}")


@pytest.mark.parametrize(("bframes", "gop"), [(2, 8), (3, 300)], ids=["bf2-gop8", "bf3-1gop"])
def test_avi_with_b_frames_reads_in_display_order(tmp_path: Path, bframes: int, gop: int) -> None:
    """AVI keeps no PTS: FFmpeg takes DTS for PTS, so decoded h264 B-frame streams carry decode
    times; every frame must still be the one a sequential decode gives at that index."""
    path = _write(tmp_path / "bframes.avi", 50, gop=gop, bframes=bframes, fmt="avi")
    with av.open(str(path)) as container:  # the failure mode this guards against
        decoded_pts = [f.pts for f in container.decode(video=0)]
    assert decoded_pts != sorted(decoded_pts)
    truth = _sequential(path)
    assert len(truth) == 50
    with open_video(path, cache_size=0) as reader:
        assert reader.info.n_frames == 50
        np.testing.assert_allclose(reader.info.timestamps, np.arange(50) / 25, atol=1e-6)
        for i in [35, 2, 27, 26, 49, 0, 17, 1, 3]:
            np.testing.assert_array_equal(reader.get_frame(i), truth[i], err_msg=f"frame {i}")
    with open_video(path, cache_size=0) as reader:
        every = [frame for _, chunk in reader.iter_chunks(chunk_size=16) for frame in chunk]
        for i, frame in enumerate(every):
            np.testing.assert_array_equal(frame, truth[i], err_msg=f"frame {i}")
        assert len(every) == 50


def test_frame_at_maps_times_to_frames(bframes_video: Path) -> None:
    with open_video(bframes_video) as reader:
        info = reader.info
        assert info.frame_at(0.0) == 0 and info.frame_at(0.039) == 0 and info.frame_at(0.04) == 1
        assert info.frame_at(1e6) == 74 and info.frame_at(-1.0) == 0
        np.testing.assert_array_equal(info.frame_at(info.timestamps), np.arange(75))


def test_image_folder_natural_order_and_fps(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        ext = ".png" if i % 2 else ".tif"
        Image.fromarray(_pattern(i)).save(folder / f"frame{i}{ext}")
    (folder / "notes.txt").write_text("not a frame")
    assert sorted(["frame10", "frame2", "frame1"], key=natural_sort_key) == [
        "frame1", "frame2", "frame10"]
    with open_video(folder, fps=10) as reader:
        assert reader.info.is_image_folder and reader.info.n_frames == 12
        np.testing.assert_allclose(reader.info.timestamps, np.arange(12) / 10)
        np.testing.assert_array_equal(reader.get_frame(10), _pattern(10))
        np.testing.assert_array_equal(reader.get_frame(2), _pattern(2))
        chunks = np.concatenate([c for _, c in reader.iter_chunks(5, size=(24, 32))])
        assert chunks.shape == (12, 24, 32, 3)
    assert open_video(folder).info.fps == 30.0
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / "frame12.png")
    with open_video(folder) as reader, pytest.raises(VideoError, match="frame 12"):
        reader.get_frame(12)


def test_out_of_range_and_bad_arguments(bframes_video: Path) -> None:
    with open_video(bframes_video) as reader:
        with pytest.raises(VideoError, match="frame 75 out of range"):
            reader.get_frame(75)
        with pytest.raises(VideoError, match="crop"):
            reader.get_frame(0, crop=(0, 0, W + 1, H))
        with pytest.raises(VideoError, match="size"):
            reader.get_frame(0, size=(0, 5))
        with pytest.raises(VideoError, match="chunk_size"):
            next(reader.iter_chunks(0))


def test_unreadable_inputs_raise_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file"):
        open_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="notes.mp4"):
        open_video(text)
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(VideoError, match="no image frames"):
        open_video(empty_folder)


def test_audio_only_and_zero_frame_files(tmp_path: Path) -> None:
    audio = tmp_path / "sound.wav"
    with av.open(str(audio), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream"):
        open_video(audio)
    for name in ("empty.mkv", "empty.mp4"):
        empty = tmp_path / name
        with av.open(str(empty), mode="w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            container.start_encoding()
        with pytest.raises(VideoError, match=f"{name}.*no frames"):
            open_video(empty)
    zero = tmp_path / "zero.mp4"
    zero.touch()
    with pytest.raises(VideoError, match="zero.mp4.*empty"):
        open_video(zero)


def test_truncated_file_decodes_what_it_can(tmp_path: Path) -> None:
    path = tmp_path / "full.mp4"
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"g": "10", "bf": "2", "crf": "18"}
        for i in range(60):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_pattern(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    truth = _sequential(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with open_video(cut) as reader:
        indexed = reader.info.n_frames
        assert 10 < indexed < 60
        good = []
        with pytest.raises(VideoError, match=r"cut\.mp4: frame \d+ cannot be decoded"):
            for _, chunk in reader.iter_chunks(8):
                good.extend(chunk)
        assert 10 <= len(good) < indexed
        for i in range(0, len(good), 7):
            np.testing.assert_array_equal(good[i], truth[i])
        # the reader now knows the last good frame; the count reflects decodable frames
        assert reader.info.last_good_frame == len(good) - 1
        assert reader.info.n_frames == len(good) == len(reader.info.timestamps)
        with pytest.raises(VideoError, match=rf"frame {len(good)} out of range.*damaged"):
            reader.get_frame(len(good))
        np.testing.assert_array_equal(reader.get_frame(3), truth[3])
    with open_video(cut, verify=True) as reader:
        assert reader.info.n_frames == len(good)
    # random access straight past the damage names the frame too
    with open_video(cut) as reader, pytest.raises(VideoError, match=r"frame \d+ cannot be"):
        reader.get_frame(indexed - 1)


def test_damaged_packet_mid_file_fails_only_that_frame(tmp_path: Path) -> None:
    source = _write(tmp_path / "source.mkv", 40, gop=10, bframes=0, fmt="matroska")
    truth = _sequential(source)
    damaged = tmp_path / "damaged.mkv"
    with av.open(str(source)) as src, av.open(str(damaged), "w", format="matroska") as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        for k, packet in enumerate(p for p in src.demux(in_stream) if p.dts is not None):
            if k == 15:  # replace frame 15's data with noise
                noise = np.random.default_rng(0).integers(0, 255, packet.size, dtype=np.uint8)
                bad = av.Packet(noise.tobytes())
                bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                packet = bad
            packet.stream = out_stream
            dst.mux(packet)
    with open_video(damaged) as reader:
        assert reader.info.n_frames == 40
        with pytest.raises(VideoError, match=r"damaged\.mkv: frame 15 cannot be decoded"):
            reader.get_frame(15)
        np.testing.assert_array_equal(reader.get_frame(14), truth[14])
        np.testing.assert_array_equal(reader.get_frame(25), truth[25])  # the next GOP is intact
        assert reader.info.n_frames == 40  # one bad frame does not cut the video
        with pytest.raises(VideoError, match="frame 15"):
            list(reader.iter_chunks(8))


def test_content_hash(tmp_path: Path, bframes_video: Path) -> None:
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(bframes_video.read_bytes())
    assert content_hash(copy) == content_hash(bframes_video)
    assert content_hash(copy).startswith("sha256s:")
    big = tmp_path / "big.bin"
    payload = bytearray(np.random.default_rng(0).integers(0, 255, 3 << 20, dtype=np.uint8))
    big.write_bytes(payload)
    first = content_hash(big)
    payload[-5] ^= 1
    big.write_bytes(payload)
    assert content_hash(big) != first
    assert content_hash(tmp_path / "big.bin", sample_bytes=1 << 10) != first
    with pytest.raises(VideoError, match="missing"):
        content_hash(tmp_path / "missing")
