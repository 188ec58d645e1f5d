"""Box-level labels: ChimpACT COCO-style JSON and KABR CVAT XML tracks (boxes kept)."""

from __future__ import annotations

import json
import shutil

import pytest

from prism_science.errors import LabelError
from prism_science.labels import Segment, detect_format, read_labels, to_frame_matrix

CLIP = "Azibo_ObsChimp_2015_11_25_d_clip_23000_24000"


def _raw_clip(ordinals=(0, 1, 2)):
    """A raw ChimpACT per-clip label file: keyframes every 10th frame, boxes + behaviors; the
    file names count keyframes (ordinal k = frame 10 * k, official create_coco_format.py)."""
    images = [{"id": i + 1, "file_name": f"{CLIP}/{k:06d}.jpg", "width": 1920, "height": 1080}
              for i, k in enumerate(ordinals)]
    annotations = [
        {"id": 1, "image_id": 1, "bbox": [100, 200, 50, 80], "bbox_vis": 1, "bbox_id": 3,
         "behaviors": [2, 7], "keypoints": [0] * 48, "category_id": 1},
        {"id": 2, "image_id": 1, "bbox": [400, 220, 60, 90], "bbox_vis": 1, "bbox_id": 5,
         "behaviors": [8], "keypoints": [0] * 48, "category_id": 1},
        {"id": 3, "image_id": 2, "bbox": [105, 202, 50, 80], "bbox_vis": 1, "bbox_id": 3,
         "behaviors": [0], "keypoints": [0] * 48, "category_id": 1},
        {"id": 4, "image_id": 3, "bbox": [110, 204, 50, 80], "bbox_vis": 1, "bbox_id": 3,
         "behaviors": [], "keypoints": [0] * 48, "category_id": 1},
    ]
    return {"info": {"description": "ChimpACT"}, "licenses": [],
            "categories": [{"id": 1, "name": "chimpanzee"}], "images": images,
            "annotations": annotations}


def test_chimpact_raw_clip_keeps_boxes_and_keyframe_labeling(tmp_path):
    path = tmp_path / f"{CLIP}.json"
    path.write_text(json.dumps(_raw_clip()))
    assert detect_format(path) == "chimpact"
    table = read_labels(path, fps=25.0, n_frames=1000)
    assert table.video_id == CLIP
    got = {(iv.behavior, iv.subject, iv.start_frame, iv.box) for iv in table.intervals}
    assert got == {
        ("resting", "3", 0, (100.0, 200.0, 150.0, 280.0)),
        ("grooming", "3", 0, (100.0, 200.0, 150.0, 280.0)),
        ("being groomed", "5", 0, (400.0, 220.0, 460.0, 310.0)),
        ("moving", "3", 10, (105.0, 202.0, 155.0, 282.0)),
    }
    assert len(table.behavior_set) == 23
    assert Segment(20, 20, "3") in table.segments  # annotated, no behavior: labeled absent
    m = to_frame_matrix(table, table.behavior_set, subject="3")
    assert (m[[0, 10, 20]] >= 0).all() and (m[1:10] == -1).all()
    assert m[0, table.behavior_set.index("resting")] == 1 and m[20].sum() == 0


def test_chimpact_raw_file_name_is_the_keyframe_ordinal(tmp_path):
    path = tmp_path / f"{CLIP}.json"
    path.write_text(json.dumps(_raw_clip(ordinals=(3, 57, 99))))
    table = read_labels(path, fps=25.0, n_frames=1000)
    assert sorted({iv.start_frame for iv in table.intervals}) == [30, 570]
    assert Segment(990, 990, "3") in table.segments  # last keyframe of a 1000-frame clip
    # A file naming frame indices instead (000990.jpg) would land beyond the clip: refused.
    path.write_text(json.dumps(_raw_clip(ordinals=(0, 10, 990))))
    with pytest.raises(LabelError, match=r"ends in 990, keyframe ordinal -> frame 9900, beyond "
                                         r"the clip's 1000 frames"):
        read_labels(path, fps=25.0, n_frames=1000)


def test_chimpact_processed_official_layout_int_keyframes_and_file_name_frames(tmp_path):
    """As create_coco_format.py writes it: iskeyframe 1/0, file_name = the video frame,
    frame_id = running image count (skips the 10-frame blocks without a keyframe)."""
    images, annotations = [], []
    frames = list(range(0, 20)) + list(range(40, 50))  # keyframe block 20-29 absent (and 30s)
    for image_id, frame in enumerate(frames, start=1):
        images.append({"id": image_id, "video_id": 1, "file_name": f"{CLIP}/{frame:06d}.jpg",
                       "height": 1080, "width": 1920, "frame_id": image_id - 1})
        annotations.append({"id": image_id, "video_id": 1, "image_id": image_id,
                            "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12,
                            "iscrowd": False, "visibility": 1, "behaviors": [frame // 10],
                            "keypoints": [], "iskeyframe": int(frame % 10 == 0),
                            "instance_id": 4})
    data = {"categories": [{"id": 1, "name": "chimpanzee"}],
            "videos": [{"id": 1, "name": f"{CLIP}.mp4", "fps": 25.0, "frames": 60,
                        "width": 1920, "height": 1080}],
            "images": images, "annotations": annotations}
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    table = read_labels(path)  # keyframes_only by default
    assert [(iv.behavior, iv.start_frame) for iv in table.intervals] == [
        ("moving", 0), ("climbing", 10), ("solitary object playing", 40)]
    every = read_labels(path, keyframes_only=False)
    assert len(every.intervals) == 30
    assert {iv.start_frame for iv in every.intervals} == set(frames)


def test_chimpact_processed_cocovid_and_bad_ids(tmp_path):
    data = {
        "videos": [{"id": 1, "name": f"{CLIP}.mp4", "fps": 25, "frames": 1000,
                    "width": 1920, "height": 1080}],
        "images": [{"id": 7, "video_id": 1, "file_name": "x.jpg", "frame_id": 10},
                   {"id": 8, "video_id": 1, "file_name": "y.jpg", "frame_id": 11}],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [1, 2, 3, 4], "instance_id": 9, "behaviors": [19],
             "iskeyframe": True},
            {"id": 2, "image_id": 8, "bbox": [1, 2, 3, 4], "instance_id": 9, "behaviors": [19],
             "iskeyframe": False},
        ],
    }
    path = tmp_path / "test.json"
    path.write_text(json.dumps(data))
    table = read_labels(path)
    assert table.video_id == CLIP and table.n_frames == 1000 and table.fps == 25.0
    assert [(iv.behavior, iv.subject, iv.start_frame) for iv in table.intervals] == [
        ("playing", "9", 10)]
    data["annotations"][0]["behaviors"] = [23]
    path.write_text(json.dumps(data))
    with pytest.raises(LabelError, match=r"annotations\[0\], field 'behaviors': id 23"):
        read_labels(path)
    data["annotations"][0]["behaviors"] = [1]
    data["annotations"][0]["image_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(LabelError, match=r"annotations\[0\], field 'image_id'"):
        read_labels(path)


CVAT = """<?xml version='1.0' encoding='UTF-8'?>
<annotations>
  <version>1.1</version>
  <track id="0" label="Grevy" source="manual">
    <points frame="0" outside="0" occluded="0" keyframe="1" points="200.00,150.00" z_order="0">
      <attribute name="Behavior">Walking</attribute>
    </points>
    <points frame="1" outside="0" occluded="0" keyframe="0" points="200.00,150.00" z_order="0">
      <attribute name="Behavior">Walking</attribute>
    </points>
    <points frame="2" outside="0" occluded="0" keyframe="1" points="200.00,150.00" z_order="0">
      <attribute name="Behavior">Graze</attribute>
    </points>
    <points frame="3" outside="1" occluded="0" keyframe="1" points="200.00,150.00" z_order="0">
      <attribute name="Behavior">Graze</attribute>
    </points>
    <points frame="4" outside="0" occluded="0" keyframe="1" points="200.00,150.00" z_order="0">
      <attribute name="Behavior">Head Up</attribute>
    </points>
  </track>
  <track id="1" label="Zebra" source="manual">
    <box frame="0" outside="0" occluded="0" keyframe="1"
         xtl="10.00" ytl="20.00" xbr="50.00" ybr="60.00" z_order="0">
      <attribute name="Behavior">Run</attribute>
    </box>
    <box frame="1" outside="0" occluded="0" keyframe="0"
         xtl="10.00" ytl="20.00" xbr="50.00" ybr="60.00" z_order="0">
      <attribute name="Behavior">Run</attribute>
    </box>
    <box frame="2" outside="0" occluded="0" keyframe="0"
         xtl="12.00" ytl="20.00" xbr="52.00" ybr="60.00" z_order="0">
      <attribute name="Behavior">Run</attribute>
    </box>
  </track>
</annotations>
"""


def test_kabr_cvat_actions_xml(tmp_path):
    folder = tmp_path / "session1" / "DJI_0001" / "actions"
    folder.mkdir(parents=True)
    path = folder / "0.xml"
    path.write_text(CVAT)
    assert detect_format(path) == "kabr-cvat"
    table = read_labels(path, fps=29.97, n_frames=10)
    assert table.video_id == "DJI_0001_0"
    got = sorted((iv.subject, iv.start_frame, iv.end_frame, iv.behavior, iv.box)
                 for iv in table.intervals)
    assert got == [
        ("0", 0, 1, "Walk", None),  # legacy "Walking" mapped by old2new
        ("0", 2, 2, "Graze", None),
        ("0", 4, 4, "Head Up", None),
        ("1", 0, 1, "Run", (10.0, 20.0, 50.0, 60.0)),  # a new interval where the box moves
        ("1", 2, 2, "Run", (12.0, 20.0, 52.0, 60.0)),
    ]
    m = to_frame_matrix(table, table.behavior_set, subject="0")
    assert (m[3] == -1).all() and (m[5:] == -1).all() and (m[:3] >= 0).all()


def test_kabr_detection_tracks_sample_is_refused_with_advice(shared_dir, tmp_path):
    path = tmp_path / "DJI_tracks.xml"
    shutil.copy(shared_dir / "data" / "formats" / "kabr" / "DJI_tracks.xml", path)
    with pytest.raises(LabelError, match=r"no\s+behavior <attribute>.*detection-tracks"):
        read_labels(path)
    (tmp_path / "broken.xml").write_text("<annotations><track id='0'>")
    with pytest.raises(LabelError, match="not well-formed"):
        read_labels(tmp_path / "broken.xml", format="kabr-cvat")
