"""Per-subject predictions exported with ``labels export`` keep their subject (BORIS, NWB),
read back with BORIS's layout (our reader) and with pynwb / ndx-ethogram / nwbinspector."""

from __future__ import annotations

import json

import pytest

from prism_science.cli.main import main
from prism_science.labels import load_labels, read_labels
from prism_science.pipeline import train_probe
from prism_science.pipeline.subjects import predict_subjects_to_store
from prism_science.store import open_store
from tests.pipeline.test_subjects import SUBJECTS, make_subject_store

pynwb = pytest.importorskip("pynwb")
pytest.importorskip("ndx_ethogram")

FPS = 30.0  # the frame rate of make_subject_store's videos


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """A store whose videos carry per-subject predictions ``predicted/p`` (and
    ``predictions/p@<subject>``) of a per-subject probe; returns the store and v0's table."""
    path = tmp_path_factory.mktemp("exports") / "s.zarr"
    make_subject_store(path)
    with open_store(path, "r") as store:
        result = train_probe(store, "manual", "linear", per_subject=True,
                             validation_fraction=0.34, seed=0)
    with open_store(path, "r+") as store:
        predict_subjects_to_store(result.probe, store, "p")
        table = load_labels(store, "v0", "predicted/p")
        for subject in SUBJECTS:
            assert store.has_item("v0", f"predictions/p@{subject}/scores")
    assert set(table.subjects()) == set(SUBJECTS)
    return path, table


def _bouts(intervals):
    """(subject, behavior, start frame, end frame) of every bout."""
    return sorted((iv.subject, iv.behavior, iv.start_frame, iv.end_frame) for iv in intervals)


def _export(store, fmt, out, *extra):
    return main(["labels", "export", "--store", str(store), "--video-id", "v0", "--name",
                 "predicted/p", "--format", fmt, "--out", str(out), *extra])


def test_boris_project_declares_the_subjects_and_codes_events_per_subject(predicted, tmp_path):
    store, table = predicted
    out = tmp_path / "v0.boris"
    assert _export(store, "boris", out) == 0
    project = json.loads(out.read_text())
    assert sorted(s["name"] for s in project["subjects_conf"].values()) == sorted(SUBJECTS)
    (observation,) = project["observations"].values()
    event_subjects = {event[1] for event in observation["events"]}
    assert event_subjects == set(SUBJECTS)
    # Each subject's state events alternate START / STOP: an even count per subject and code.
    for subject in SUBJECTS:
        for behavior in {iv.behavior for iv in table.intervals if iv.subject == subject}:
            n = sum(1 for e in observation["events"] if e[1] == subject and e[2] == behavior)
            assert n % 2 == 0 and n > 0
    back = read_labels(out)
    assert _bouts(back.intervals) == _bouts(table.intervals)
    for subject in SUBJECTS:  # every subject's bouts come back, with that subject
        mine = [b for b in _bouts(back.intervals) if b[0] == subject]
        assert mine and mine == [b for b in _bouts(table.intervals) if b[0] == subject]


def test_boris_tabular_export_keeps_the_subject_column(predicted, tmp_path):
    store, table = predicted
    out = tmp_path / "v0.csv"
    assert _export(store, "boris-tabular", out) == 0
    assert _bouts(read_labels(out).intervals) == _bouts(table.intervals)


def test_nwb_bouts_carry_the_subject_for_pynwb_and_ndx_ethogram(predicted, tmp_path):
    from ndx_ethogram import EthogramBouts

    store, table = predicted
    out = tmp_path / "v0.nwb"
    assert _export(store, "nwb", out) == 0
    with pynwb.NWBHDF5IO(str(out), "r", load_namespaces=True) as io:
        nwb = io.read()
        assert sorted(nwb.subject.subject_id.split("+")) == sorted(SUBJECTS)
        bouts = [t for t in nwb.processing["behavior"].data_interfaces.values()
                 if isinstance(t, EthogramBouts)]
        assert len(bouts) == 1 and bouts[0].labeling_method == "automated"
        frame = bouts[0].to_dataframe()
    assert set(frame["subject"]) == set(SUBJECTS)
    read = sorted((row.subject, row.label, int(round(row.start_time * FPS)),
                   int(round(row.stop_time * FPS)) - 1) for row in frame.itertuples())
    assert read == _bouts(table.intervals)
    back = read_labels(out)
    assert _bouts(back.intervals) == _bouts(table.intervals)


def test_nwb_of_per_subject_predictions_passes_nwbinspector(predicted, tmp_path):
    nwbinspector = pytest.importorskip("nwbinspector")
    store, _ = predicted
    out = tmp_path / "v0.nwb"
    assert _export(store, "nwb", out) == 0
    findings = [(m.importance.name, m.check_function_name, m.message)
                for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(out))]
    assert not [f for f in findings if f[0] in ("CRITICAL", "ERROR", "PYNWB_VALIDATION")], \
        findings


def test_one_subjects_export_holds_only_its_bouts(predicted, tmp_path, capsys):
    store, table = predicted
    out = tmp_path / "male.nwb"
    assert _export(store, "nwb", out, "--subject", "male") == 0
    back = read_labels(out)
    assert {iv.subject for iv in back.intervals} == {"male"}
    assert _bouts(back.intervals) == [b for b in _bouts(table.intervals) if b[0] == "male"]
    assert _export(store, "nwb", tmp_path / "x.nwb", "--subject", "queen") == 2
    assert "no subject 'queen'" in capsys.readouterr().err
