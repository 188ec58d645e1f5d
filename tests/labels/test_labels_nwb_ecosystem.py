"""NWB files of the ecosystem (neuroconv's BORIS layout, ndx-ethogram bouts, TimeIntervals of
any shape) imported; our NWB carries ndx-ethogram bouts, a Subject and a real session start and
passes nwbinspector."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.labels import (
    BehaviorSet,
    Interval,
    LabelTable,
    Segment,
    read_label_tables,
    read_labels,
    to_frame_matrix,
    write_labels,
)
from prism_science.labels.formats import ReadReport

pynwb = pytest.importorskip("pynwb")
ndx_ethogram = pytest.importorskip("ndx_ethogram")

FPS = 10.0


def _nwbfile():
    return pynwb.NWBFile(session_description="mouse social behavior", identifier="session-1",
                         session_start_time=datetime(2024, 1, 1, 9, tzinfo=timezone.utc))


def _write(nwb, path):
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _neuroconv_boris(path):
    """One BORIS observation ("obs 1") laid out as neuroconv's BORISInterface writes it: the
    events of every behavior in one EventsTable named after the observation (``timestamp``,
    ``duration`` NaN for point behaviors and unclosed bouts, ``event_type`` plus the BORIS
    columns), the coding scheme as an ndx-ethogram ``Ethogram`` and the closed state bouts as
    ``<Observation>Bouts`` (EthogramBouts) in the ``behavior`` processing module."""
    from pynwb.event import EventsTable

    nwb = _nwbfile()
    events = [  # (onset, duration, code, subject, modifiers, comment)
        (1.0, 1.5, "grooming", "resident", "head", ""),
        (2.0, np.nan, "sniff", "intruder", "", "quick"),
        (4.01, 0.98, "attack", "resident", "", ""),
        (6.0, np.nan, "attack", "intruder", "", "never stopped"),
    ]
    table = EventsTable(name="Obs1", description="Behaviors scored in BORIS observation 'obs 1'")
    table.add_column(name="duration", description="bout length (NaN: point or unclosed)",
                     col_cls=pynwb.event.DurationVectorData)
    for name in ("event_type", "subject", "modifiers", "comment"):
        table.add_column(name=name, description=name)
    for onset, duration, code, subject, modifiers, comment in events:
        table.add_row(timestamp=onset, duration=duration, event_type=code, subject=subject,
                      modifiers=modifiers, comment=comment)
    nwb.add_events_table(table)
    module = nwb.create_processing_module(name="behavior", description="Behavioral annotations.")
    catalogue = ndx_ethogram.Ethogram(name="Ethogram", description="The BORIS coding scheme",
                                      exclusive=False)
    for code, kind in (("grooming", "state"), ("sniff", "point"), ("attack", "state"),
                       ("rearing", "state")):
        catalogue.add_row(behavior=code, definition="", behavior_type=kind)
    module.add(catalogue)
    bouts = ndx_ethogram.EthogramBouts(
        name="Obs1Bouts", description="State behavior bouts scored in BORIS observation 'obs 1'",
        labeling_method="manual", source_software="BORIS", ethogram=catalogue)
    for name in ("subject", "modifiers", "comment"):
        bouts.add_column(name=name, description=name)
    for onset, duration, code, subject, modifiers, comment in events:
        if not np.isnan(duration):
            bouts.add_interval(start_time=onset, stop_time=onset + duration, label=code,
                               subject=subject, modifiers=modifiers, comment=comment)
    module.add(bouts)
    return _write(nwb, path)


def test_neuroconv_boris_layout_gives_bouts_points_and_subjects(tmp_path):
    path = _neuroconv_boris(tmp_path / "neuroconv_boris.nwb")
    report = ReadReport()
    table = read_labels(path, fps=FPS, n_frames=100, report=report)
    assert table.video_id == "neuroconv_boris" and table.observation == "Obs1"
    got = sorted((iv.behavior, iv.subject, iv.start_frame, iv.end_frame, iv.modifiers)
                 for iv in table.intervals)
    # bouts from the Bouts table (not twice from the events table), the point from the events
    assert got == [("attack", "resident", 40, 49, ""), ("grooming", "resident", 10, 24, "head"),
                   ("sniff", "intruder", 20, 20, "")]
    attack = next(iv for iv in table.intervals if iv.behavior == "attack")
    # seconds recomputed from the snapped frames (4.01 -> frame 40 -> 4.0 s)
    assert (attack.start_s, attack.end_s) == pytest.approx((4.0, 5.0))
    assert "rearing" in table.behavior_set  # the catalogue's vocabulary, bouts or not
    assert any("without a stop" in note for note in report.notes)


def test_ethogram_bouts_in_a_processing_module_and_in_intervals(tmp_path):
    nwb = _nwbfile()
    observed = pynwb.epoch.TimeIntervals(name="assessed", description="coded spans")
    observed.add_row(start_time=0.0, stop_time=3.0)
    nwb.add_time_intervals(observed)
    scorer = ndx_ethogram.EthogramBouts(
        name="scorer_bouts", description="manual", labeling_method="manual",
        annotator="lab annotator 1", observation_intervals=observed)
    scorer.add_row(start_time=1.0, stop_time=2.5, label="grooming")
    scorer.add_row(start_time=2.0, stop_time=3.0, label="rearing")  # overlap is allowed
    nwb.create_processing_module("behavior", "bouts").add(scorer)
    model = ndx_ethogram.EthogramBouts(name="vame_bouts", description="motifs",
                                       labeling_method="automated", source_software="VAME 1.1")
    model.add_row(start_time=0.5, stop_time=0.9, label="7")
    nwb.add_time_intervals(model)
    path = _write(nwb, tmp_path / "bouts.nwb")
    tables = read_label_tables(path, fps=FPS, n_frames=60)
    assert set(tables) == {"bouts/vame_bouts", "bouts/scorer_bouts"}
    scored = tables["bouts/scorer_bouts"]
    assert [(iv.behavior, iv.start_frame, iv.end_frame, iv.annotator, iv.source)
            for iv in scored.intervals] == [("grooming", 10, 24, "lab annotator 1", "manual"),
                                            ("rearing", 20, 29, "lab annotator 1", "manual")]
    assert scored.segments == [Segment(0, 29)]  # assessed only during the first 3 s
    m = to_frame_matrix(scored, scored.behaviors())
    assert (m[30:] == -1).all() and (m[:30] >= 0).all()
    (motif,) = tables["bouts/vame_bouts"].intervals
    assert (motif.behavior, motif.source, motif.start_frame, motif.end_frame) == \
        ("7", "predicted", 5, 8)


def test_time_intervals_with_behavior_and_subject_columns(tmp_path):
    nwb = _nwbfile()
    t = pynwb.epoch.TimeIntervals(name="annotations", description="behavior bouts")
    t.add_column(name="behavior", description="behavior")
    t.add_column(name="subject_id", description="animal")
    for start, stop, behavior, subject in [(0.0, 1.0, "chase", "m1"), (0.5, 1.2, "chase", "m2"),
                                           (2.0, 2.3, "mount", "m1")]:
        t.add_row(start_time=start, stop_time=stop, behavior=behavior, subject_id=subject)
    nwb.add_time_intervals(t)
    path = _write(nwb, tmp_path / "cols.nwb")
    table = read_labels(path, fps=FPS, n_frames=40)
    assert sorted((iv.behavior, iv.subject, iv.start_frame, iv.end_frame)
                  for iv in table.intervals) == [("chase", "m1", 0, 9), ("chase", "m2", 5, 11),
                                                 ("mount", "m1", 20, 22)]
    assert "annotations" not in table.behaviors()  # the table name is not a behavior


def test_nwb_without_behavior_tables_is_refused(tmp_path):
    path = _write(_nwbfile(), tmp_path / "empty.nwb")
    with pytest.raises(LabelError, match="no behavior tables found"):
        read_labels(path, fps=FPS)


def _table():
    ts = np.arange(100) / 30.0
    ts[50:] += 0.1  # three frames dropped at frame 50
    return LabelTable(
        [Interval("wing extension", 10, 19, subject="fly1", annotator="ann", modifiers="left"),
         Interval("chase", 48, 55, subject="fly2", annotator="ann"),
         Interval("chase", 70, 80, subject="fly1", source="predicted", confidence=0.8)],
        [Segment(0, 89)], "fly_01", 100, 30.0, ts,
        BehaviorSet(("wing extension", "chase", "copulation")), observation="obs1",
    ).recompute_seconds()


def test_our_nwb_has_ethogram_bouts_subject_session_start_and_passes_nwbinspector(tmp_path):
    nwbinspector = pytest.importorskip("nwbinspector")
    table = _table()
    path = write_labels(table, tmp_path / "fly_01.nwb", species="Drosophila melanogaster")
    findings = [(m.importance.name, m.check_function_name, m.message)
                for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(path))]
    bad = [f for f in findings if f[0] in ("CRITICAL", "ERROR", "PYNWB_VALIDATION")]
    assert not bad, bad
    with pynwb.NWBHDF5IO(str(path), "r", load_namespaces=True) as io:
        nwb = io.read()
        assert nwb.subject.subject_id == "fly1+fly2"
        assert nwb.subject.species == "Drosophila melanogaster"
        assert nwb.session_start_time.year >= 2024
        module = nwb.processing["behavior"]
        assert set(module.data_interfaces) == {"ethogram", "manual_bouts", "predicted_bouts"}
        manual = module["manual_bouts"]
        assert manual.labeling_method == "manual" and manual.annotator == "ann"
        assert list(manual["label"].data[:]) == ["wing extension", "chase"]
        assert manual.observation_intervals.name == "labeled_segments"
        assert module["predicted_bouts"].labeling_method == "automated"
        assert list(module["ethogram"]["behavior"].data[:]) == ["wing extension", "chase",
                                                                "copulation"]
    back = read_labels(path)  # our own table wins over the bouts (no duplicates)
    assert sorted(back.intervals, key=lambda iv: iv.start_frame) == table.intervals
    assert back.observation == "obs1" and back.intervals[0].modifiers == "left"
