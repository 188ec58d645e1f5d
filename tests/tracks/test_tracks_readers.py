"""Each tracks reader on small files written in the tools' own layouts (by the tools' writers
where they have one), and the plain CSV both ways."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.errors import TracksError
from prism_science.tracks import (
    Tracks,
    detect_tracks_format,
    read_tracks,
    write_tracks_csv,
)

T = 12
NODES = ("head", "thorax", "abdomen")


def _poses(n_subjects: int = 2) -> np.ndarray:
    """(T, S, 3, 2): subject k walks right along y = 40 + 60 k, head in front (+x)."""
    out = np.zeros((T, n_subjects, 3, 2), dtype=np.float32)
    for k in range(n_subjects):
        for t in range(T):
            x, y = 50.0 + 2 * t, 40.0 + 60 * k
            out[t, k] = [[x + 10, y], [x, y], [x - 10, y]]
    return out


def _check_poses(tracks: Tracks, subjects: list[str], missing: tuple[int, int] | None = None):
    expected = _poses(len(subjects))
    assert tracks.subjects == subjects
    assert tracks.n_frames == T
    assert tracks.keypoint_names == list(NODES)
    present = np.ones((T, len(subjects)), dtype=bool)
    if missing is not None:
        present[missing] = False
    np.testing.assert_array_equal(tracks.present, present)
    np.testing.assert_allclose(tracks.centroids[present], expected[:, :, 1][present], atol=1e-3)
    np.testing.assert_allclose(tracks.heading[present], 0.0, atol=1e-5)  # facing +x
    np.testing.assert_allclose(tracks.body_length[present], 20.0, atol=1e-4)


# -------------------------------------------------------------------------------- SLEAP
def test_sleap_slp_written_by_sleap_io(tmp_path):
    sio = pytest.importorskip("sleap_io", reason="the [tracks] extra (sleap-io) is not installed")
    pytest.importorskip("movement", reason="the [tracks] extra (movement) is not installed")
    skeleton = sio.Skeleton(list(NODES))  # it converts the list in place
    tracks = [sio.Track("female"), sio.Track("male")]
    video = sio.Video(filename="clip.mp4", open_backend=False)
    poses = _poses()
    frames = []
    for t in range(T):
        instances = [sio.Instance.from_numpy(poses[t, k].astype(float), skeleton=skeleton,
                                             track=tracks[k])
                     for k in range(2) if not (t == 6 and k == 1)]  # male unlabeled at frame 6
        frames.append(sio.LabeledFrame(video=video, frame_idx=t, instances=instances))
    labels = sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton], tracks=tracks)
    path = tmp_path / "clip.slp"
    sio.save_slp(labels, str(path))
    assert detect_tracks_format(path) == "sleap"
    raw = read_tracks(path, max_gap=0)
    _check_poses(raw, ["female", "male"], missing=(6, 1))
    assert raw.n_frames_known is False  # a .slp does not state the video's length
    filled = read_tracks(path)  # default max_gap 5 fills the one-frame gap
    assert filled.present.all() and filled.interpolated[6, 1] and not filled.interpolated[5, 1]
    np.testing.assert_allclose(filled.centroids[6, 1], [62.0, 100.0], atol=1e-4)


def test_sleap_analysis_h5_written_by_movement(tmp_path):
    movement_io = pytest.importorskip("movement.io", reason="the [tracks] extra is not installed")
    from movement.io import save_poses

    poses = _poses()  # movement's layout: (time, space, keypoints, individuals)
    ds = movement_io.load_poses.from_numpy(
        np.transpose(poses, (0, 3, 2, 1)), np.full((T, 3, 2), 0.9, dtype=np.float32),
        individual_names=["a", "b"], keypoint_names=list(NODES), source_software="SLEAP")
    path = tmp_path / "clip.analysis.h5"
    save_poses.to_sleap_analysis_file(ds, path)
    assert detect_tracks_format(path) == "sleap"
    tracks = read_tracks(path)
    _check_poses(tracks, ["a", "b"])
    np.testing.assert_allclose(tracks.confidence, 0.9, atol=1e-5)
    assert tracks.n_frames_known


# ---------------------------------------------------------------------------------- DLC
def _dlc_frame(multi: bool):
    pd = pytest.importorskip("pandas")
    poses = _poses()
    columns, data = [], []
    for k, individual in enumerate(["mouse1", "mouse2"] if multi else [None]):
        for j, part in enumerate(NODES):
            for coord in ("x", "y", "likelihood"):
                key = ("DLC_resnet50_openfieldOct30shuffle1_1030000",)
                key += (individual,) if multi else ()
                columns.append((*key, part, coord))
                if coord == "likelihood":
                    values = np.full(T, 0.95)
                else:
                    values = poses[:, k, j, 0 if coord == "x" else 1].astype(float)
                if multi and k == 1:
                    values = values.copy()
                    values[3:10] = np.nan  # mouse2 lost for 7 frames: longer than max_gap 5
                data.append(values)
    names = ["scorer", "individuals", "bodyparts", "coords"] if multi else \
        ["scorer", "bodyparts", "coords"]
    return pd.DataFrame(np.stack(data, axis=1), columns=pd.MultiIndex.from_tuples(columns,
                                                                                  names=names))


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_deeplabcut_files_in_dlc_layout(tmp_path, multi, suffix):
    pytest.importorskip("movement", reason="the [tracks] extra is not installed")
    df = _dlc_frame(multi)
    path = tmp_path / f"videoDLC_resnet50{suffix}"
    if suffix == ".h5":
        pytest.importorskip("tables", reason="pandas needs PyTables to write DLC .h5")
        df.to_hdf(path, key="df_with_missing", mode="w")
    else:
        df.to_csv(path)
    assert detect_tracks_format(path) == "dlc"
    tracks = read_tracks(path)
    if multi:
        assert tracks.subjects == ["mouse1", "mouse2"]
        # the 7-frame gap is longer than max_gap: masked, not invented
        assert not tracks.present[3:10, 1].any() and tracks.present[:, 0].all()
        assert tracks.missing_runs("mouse2") == [(3, 9)]
        filled = read_tracks(path, max_gap=7)
        np.testing.assert_allclose(filled.centroids[:, 1], _poses()[:, 1, 1], atol=1e-3)
    else:
        assert tracks.n_subjects == 1
        _check_poses(tracks, tracks.subjects)
    np.testing.assert_allclose(tracks.confidence[tracks.present], 0.95, atol=1e-6)
    assert tracks.n_frames_known


# ------------------------------------------------------------------------------- KABR CVAT
def test_kabr_cvat_xml_tracks(tmp_path):
    boxes = []
    for frame in range(6):
        outside = "1" if frame == 5 else "0"
        boxes.append(f'<box frame="{frame}" outside="{outside}" occluded="0" keyframe="1" '
                     f'xtl="{100 + frame}.00" ytl="200.00" xbr="{140 + frame}.00" ybr="220.00" '
                     'z_order="0"/>')
    xml = ("<?xml version='1.0' encoding='UTF-8'?>\n<annotations>\n<version>1.1</version>\n"
           "<meta><task><size>8</size><original_size><width>3840</width><height>2160</height>"
           "</original_size></task></meta>\n"
           '<track id="0" label="Grevy" source="manual">' + "".join(boxes) + "</track>\n"
           '<track id="3" label="Grevy" source="manual">'
           '<box frame="2" outside="0" occluded="0" keyframe="1" xtl="10" ytl="10" xbr="30" '
           'ybr="50" z_order="0"/></track>\n</annotations>\n')
    path = tmp_path / "DJI_tracks.xml"
    path.write_text(xml)
    assert detect_tracks_format(path) == "kabr-cvat"
    tracks = read_tracks(path, max_gap=0)
    assert tracks.subjects == ["0", "3"]
    assert tracks.n_frames == 8 and tracks.n_frames_known
    assert tracks.frame_size == (2160, 3840)
    np.testing.assert_allclose(tracks.centroids[2, 0], [122.0, 210.0])
    np.testing.assert_allclose(tracks.boxes[2, 1], [10, 10, 30, 50])
    assert not tracks.present[5, 0]  # outside="1"
    assert tracks.present[:, 1].sum() == 1
    np.testing.assert_allclose(tracks.body_length[0, 0], 40.0)


# ------------------------------------------------------------------------------ ChimpACT
def test_chimpact_raw_coco_keyframes_are_interpolated(tmp_path):
    # raw per-clip files name each keyframe by its ordinal k: the video frame is 10 * k
    images = [{"id": i, "file_name": f"Azibo_clip/{i:06d}.jpg", "width": 1920,
               "height": 1080} for i in range(3)]
    annotations = []
    for i in range(3):
        annotations.append({"id": i, "image_id": i, "bbox": [100 + 10 * i, 50, 40, 80],
                            "bbox_id": 7, "behaviors": [0]})
    annotations.append({"id": 9, "image_id": 0, "bbox": [500, 500, 60, 60], "bbox_id": 2,
                        "behaviors": [2]})
    path = tmp_path / "Azibo_clip.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "chimp"}]}))
    assert detect_tracks_format(path) == "chimpact"
    tracks = read_tracks(path)
    assert tracks.subjects == ["2", "7"]
    assert tracks.frame_size == (1080, 1920)
    assert tracks.n_frames == 21 and not tracks.n_frames_known
    # keyframes every 10th frame: the 9-frame gaps are filled (ChimpACT's own interpolation)
    assert tracks.present[:, 1].all() and tracks.interpolated[1:10, 1].all()
    np.testing.assert_allclose(tracks.centroids[5, 1], [125.0, 90.0])
    assert tracks.present[:, 0].sum() == 1


def test_chimpact_coco_vid_picks_the_video(tmp_path):
    data = {
        "videos": [{"id": 1, "name": "clipA", "frames": 4, "width": 640, "height": 360},
                   {"id": 2, "name": "clipB", "frames": 4, "width": 640, "height": 360}],
        "images": [{"id": 10 + f, "video_id": 1, "frame_id": f} for f in range(4)]
        + [{"id": 20, "video_id": 2, "frame_id": 0}],
        "annotations": [{"id": f, "image_id": 10 + f, "bbox": [f, 0, 10, 10], "instance_id": 5,
                         "iskeyframe": f == 0} for f in range(4)]
        + [{"id": 99, "image_id": 20, "bbox": [0, 0, 5, 5], "instance_id": 1}],
        "categories": [{"id": 1, "name": "chimp"}],
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TracksError, match="holds 2 videos.*clipA, clipB.*video="):
        read_tracks(path)
    tracks = read_tracks(path, video="clipA")
    assert tracks.subjects == ["5"] and tracks.n_frames == 4 and tracks.n_frames_known
    np.testing.assert_allclose(tracks.centroids[:, 0, 0], [5, 6, 7, 8])
    with pytest.raises(TracksError, match="no video named 'clipC'"):
        read_tracks(path, video="clipC")


# ------------------------------------------------------------------------------- CalMS21
def test_calms21_keypoints(tmp_path):
    rng = np.random.default_rng(0)
    n = 5
    kp = rng.uniform(100, 500, size=(n, 2, 2, 7))
    kp[:, :, 0, 0] = kp[:, :, 0, 6] + 30  # nose 30 px right of the tail base
    kp[:, :, 1, 0] = kp[:, :, 1, 6]
    seq = {"keypoints": kp.tolist(), "scores": np.full((n, 2, 7), 0.8).tolist(),
           "annotations": [3] * n,
           "metadata": {"annotator-id": 0, "vocab": {"attack": 0, "investigation": 1,
                                                     "mount": 2, "other": 3}}}
    path = tmp_path / "calms21_task1_test.json"
    path.write_text(json.dumps({"annotator-id_0": {
        "task1/test/mouse001_task1_annotator1": seq,
        "task1/test/mouse002_task1_annotator1": seq}}))
    assert detect_tracks_format(path) == "calms21"
    with pytest.raises(TracksError, match="holds 2 sequences"):
        read_tracks(path)
    tracks = read_tracks(path, video="mouse002_task1_annotator1")
    assert tracks.subjects == ["resident", "intruder"]
    assert tracks.keypoint_names[0] == "nose" and tracks.keypoint_names[6] == "tail_base"
    np.testing.assert_allclose(tracks.centroids[:, 0, 0], kp[:, 0, 0].mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(tracks.heading, 0.0, atol=1e-5)  # nose - tail base = +x
    np.testing.assert_allclose(tracks.confidence, 0.8, atol=1e-6)
    assert tracks.fps == 30.0 and tracks.n_frames_known


# ----------------------------------------------------------------------------- FlyTracker
def test_flytracker_track_mat(tmp_path):
    from scipy.io import savemat

    names = np.array(["pos x", "pos y", "ori", "major axis len", "minor axis len"],
                     dtype=object)
    n_flies, n = 2, 6
    data = np.zeros((n_flies, n, len(names)))
    for fly in range(n_flies):
        data[fly, :, 0] = 101 + np.arange(n)  # MATLAB 1-based pixels
        data[fly, :, 1] = 51 + 20 * fly
        data[fly, :, 2] = np.pi / 2  # regionprops orientation: facing up on screen
        data[fly, :, 3] = 30.0
    data[1, 2:4, :] = np.nan
    path = tmp_path / "movie-track.mat"
    savemat(path, {"trk": {"names": names.reshape(1, -1), "data": data,
                           "flags": np.zeros((0, 6))}})
    assert detect_tracks_format(path) == "flytracker"
    tracks = read_tracks(path, max_gap=0)
    assert tracks.subjects == ["fly1", "fly2"]
    np.testing.assert_allclose(tracks.centroids[:, 0, 0], 100 + np.arange(n))
    np.testing.assert_allclose(tracks.centroids[0, 1], [100.0, 70.0])
    np.testing.assert_allclose(tracks.heading[0, 0], -np.pi / 2, atol=1e-6)  # up = -y
    np.testing.assert_allclose(tracks.body_length[0, 0], 30.0)
    assert tracks.missing_runs("fly2") == [(2, 3)]


def test_flytracker_track_mat_v73(tmp_path):
    """MATLAB v7.3 is HDF5: arrays stored transposed, cellstr names as object references."""
    h5py = pytest.importorskip("h5py")
    names = ["pos x", "pos y", "ori", "major axis len"]
    data = np.zeros((1, 4, len(names)))  # one fly, 4 frames
    data[0, :, 0], data[0, :, 1], data[0, :, 2], data[0, :, 3] = 11, 21, 0.0, 25.0
    path = tmp_path / "movie-track.mat"
    with h5py.File(path, "w") as f:
        trk = f.create_group("trk")
        trk.create_dataset("data", data=data.transpose())  # (fields, frames, flies)
        refs = f.create_group("#refs#")
        ref_list = []
        for i, name in enumerate(names):
            ds = refs.create_dataset(f"n{i}", data=np.array([ord(c) for c in name],
                                                            dtype=np.uint16)[:, None])
            ref_list.append(ds.ref)
        trk.create_dataset("names", data=np.array(ref_list, dtype=h5py.ref_dtype)[:, None])
    tracks = read_tracks(path, format="flytracker")
    assert tracks.subjects == ["fly1"] and tracks.n_frames == 4
    np.testing.assert_allclose(tracks.centroids[:, 0], [[10, 20]] * 4)
    np.testing.assert_allclose(tracks.body_length[:, 0], 25.0)


# ----------------------------------------------------------------------------- plain CSV
def test_plain_csv_round_trip(tmp_path):
    centroids = np.array([[[10, 20], [100, 50]], [[12, 21], [np.nan, np.nan]],
                          [[14, 22], [104, 52]]], dtype=np.float32)
    boxes = np.concatenate([centroids - [4, 3], centroids + [4, 3]], axis=-1)
    tracks = Tracks(centroids=centroids, subjects=["male", "female"],
                    heading=np.array([[0.5, -2.0], [0.6, 0.0], [0.7, 3.0]]),
                    confidence=np.full((3, 2), 0.75), boxes=boxes,
                    body_length=np.full((3, 2), 9.0), frame_size=(240, 320), fps=25.0,
                    source="clip.mp4", n_frames_known=True)
    tracks = tracks.padded(5)
    path = write_tracks_csv(tracks, tmp_path / "clip.tracks.csv", video="clip.mp4")
    text = path.read_text().splitlines()
    assert text[0].startswith("# prism-science tracks ")
    assert text[1] == "frame,subject,x,y,w,h,angle,confidence,body_length"
    assert text[2] == "0,male,10.00,20.00,8.0,6.0,28.6,0.750,9.0"
    assert len(text) == 2 + 5  # one row per present subject-frame
    assert detect_tracks_format(path) == "csv"
    back = read_tracks(path, max_gap=0)
    assert back.subjects == ["male", "female"]
    assert back.n_frames == 5 and back.n_frames_known and back.frame_size == (240, 320)
    np.testing.assert_array_equal(back.present, tracks.present)
    np.testing.assert_allclose(back.centroids[back.present], centroids[tracks.present[:3]])
    np.testing.assert_allclose(back.boxes[0, 0], boxes[0, 0])
    np.testing.assert_allclose(back.heading[tracks.present], tracks.heading[tracks.present],
                               atol=1e-3)
    np.testing.assert_allclose(back.confidence[back.present], 0.75)
    # the one missing frame of 'female' is interpolated by default
    assert read_tracks(path).present[1, 1]


def test_plain_csv_minimal_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("frame,subject,x,y\n0,a,1,2\n3,a,4,5\n1,b,7,8\n")
    tracks = read_tracks(path)
    assert tracks.subjects == ["a", "b"] and tracks.n_frames == 4
    np.testing.assert_allclose(tracks.centroids[1:3, 0], [[2, 3], [3, 4]])  # gap of 2 filled
    assert tracks.boxes is None and np.isnan(tracks.heading).all()
    assert not tracks.n_frames_known


@pytest.mark.parametrize(("body", "message"), [
    ("frame,subject,x\n0,a,1\n", r"columns \['y'\] missing"),
    ("frame,subject,x,y\n0,a,1,zz\n", r"line 2, column 'y': expected a number, found 'zz'"),
    ("frame,subject,x,y\n0,a,1,2\n0,a,3,4\n", r"line 3: frame 0 of subject 'a' already given "
     "on line 2"),
    ("frame,subject,x,y\n-1,a,1,2\n", r"line 2, column 'frame': -1 is negative"),
    ("frame,subject,x,y\n0,,1,2\n", r"line 2, column 'subject': empty"),
])
def test_plain_csv_errors_name_line_and_column(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(TracksError, match=message):
        read_tracks(path, format="csv")


def test_unknown_files_are_refused_with_the_formats(tmp_path):
    path = tmp_path / "tracks.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(TracksError, match="unknown tracks file type '.parquet'"):
        read_tracks(path)
    with pytest.raises(TracksError, match="no such tracks file"):
        read_tracks(tmp_path / "absent.csv")
    other = tmp_path / "other.csv"
    other.write_text("time,animal,px,py\n0,a,1,2\n")
    with pytest.raises(TracksError, match="neither our tracks CSV"):
        read_tracks(other)
