"""CalMS21 task 3, KABR's 29.97 fps and the CVAT XML's own vocabulary, DeepEthogram one animal
per file, modifiers through the plain CSV and the store document."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.labels import (
    Interval,
    LabelTable,
    Segment,
    detect_format,
    read_label_tables,
    read_labels,
    write_labels,
)

TASK3 = ("approach", "disengaged", "groom")


def test_calms21_task3_one_binary_behavior_per_group(tmp_path):
    # calms21_task3_train.json: groups are behaviors, vocab {"other": 0, <behavior>: 1}
    data = {}
    for b, behavior in enumerate(TASK3):
        labels = [0, 1, 1, 0, 0, 1][: 4 + b]
        data[behavior] = {f"task3/{behavior}/train/mouse{b:03d}_task3_{behavior}": {
            "keypoints": np.zeros((len(labels), 2, 2, 7)).tolist(),
            "scores": np.ones((len(labels), 2, 7)).tolist(), "annotations": labels,
            "metadata": {"annotator-id": 0, "vocab": {"other": 0, behavior: 1}}}}
    path = tmp_path / "calms21_task3_train.json"
    path.write_text(json.dumps(data))
    assert detect_format(path) == "calms21"
    tables = read_label_tables(path)
    assert set(tables) == {f"mouse{b:03d}_task3_{x}" for b, x in enumerate(TASK3)}
    groom = tables["mouse002_task3_groom"]
    assert groom.observation == "groom" and groom.behavior_set.names == ("groom",)
    assert [(iv.behavior, iv.start_frame, iv.end_frame, iv.annotator)
            for iv in groom.intervals] == [("groom", 1, 2, "0"), ("groom", 5, 5, "0")]
    assert groom.n_frames == 6 and groom.fps == 30.0


def test_kabr_csv_uses_29_97_fps_by_default(tmp_path):
    rows = ["original_vido_id video_id frame_id path labels"]
    rows += [f"G0001 1 {i + 1} G0001/{i + 1}.jpg {v}" for i, v in enumerate([0, 0, 1, 1])]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(rows) + "\n")
    table = read_labels(path)
    graze = table.intervals[1]
    assert table.fps == 29.97 and graze.start_s == pytest.approx(2 / 29.97)
    assert read_labels(path, fps=30.0).fps == 30.0  # the caller's rate wins (a warning)
    with pytest.raises(LabelError, match="29.97 fps"):
        read_labels(path, fps=60.0)


CVAT_WITH_META = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>giraffe 12</name>
      <mode>interpolation</mode>
      <labels>
        <label>
          <name>Giraffe</name>
          <attributes>
            <attribute>
              <name>Behavior</name>
              <mutable>True</mutable>
              <input_type>select</input_type>
              <default_value>Browse</default_value>
              <values>Browse
Walking
Vigilance
Drinking</values>
            </attribute>
          </attributes>
        </label>
      </labels>
    </task>
  </meta>
  <track id="0" label="Giraffe" source="manual">
    <points frame="0" outside="0" occluded="0" keyframe="1" points="1,2" z_order="0">
      <attribute name="Behavior">Vigilance</attribute>
    </points>
    <points frame="1" outside="0" occluded="0" keyframe="0" points="1,2" z_order="0">
      <attribute name="Behavior">Vigilance</attribute>
    </points>
    <points frame="2" outside="0" occluded="0" keyframe="0" points="1,2" z_order="0">
      <attribute name="Behavior">Walking</attribute>
    </points>
  </track>
</annotations>
"""


def test_kabr_cvat_xml_uses_its_own_vocabulary_and_29_97_fps(tmp_path):
    path = tmp_path / "12.xml"
    path.write_text(CVAT_WITH_META)
    table = read_labels(path, n_frames=3)
    # the file's vocabulary, in its order, with the legacy name mapped (Walking -> Walk)
    assert table.behavior_set.names == ("Browse", "Walk", "Vigilance", "Drinking")
    assert [(iv.behavior, iv.start_frame, iv.end_frame) for iv in table.intervals] == [
        ("Vigilance", 0, 1), ("Walk", 2, 2)]
    assert table.fps == 29.97 and table.intervals[1].start_s == pytest.approx(2 / 29.97)


def test_deepethogram_export_refuses_several_subjects(tmp_path):
    table = LabelTable([Interval("groom", 0, 3, subject="m1"), Interval("groom", 2, 5,
                                                                        subject="m2")],
                       [Segment(0, 9)], "v", 10, 30.0).recompute_seconds()
    with pytest.raises(LabelError, match=r"2 subjects \('m1', 'm2'\).*one subject per file"):
        write_labels(table, tmp_path / "v_labels.csv", format="deepethogram")
    out = write_labels(table.select(subject="m2"), tmp_path / "v_labels.csv",
                       format="deepethogram")
    assert [iv.start_frame for iv in read_labels(out).intervals] == [2]


def test_modifiers_survive_the_plain_csv_and_the_store_document(tmp_path):
    table = LabelTable([Interval("groom", 0, 3, modifiers="head|slow"), Interval("walk", 5, 6)],
                       [Segment(0, 9)], "v", 10, 30.0, observation="obs 2").recompute_seconds()
    back = read_labels(write_labels(table, tmp_path / "v.labels.csv"))
    assert [iv.modifiers for iv in back.intervals] == ["head|slow", ""]
    again = LabelTable.from_dict(table.to_dict())
    assert again.observation == "obs 2" and again.intervals == table.intervals
