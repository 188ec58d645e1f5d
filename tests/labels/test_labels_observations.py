"""BORIS observations first-class: several coders / focal animals on one video, bad observations
skipped and reported, modifiers kept, BORIS 7/8/9 export headers, .boris export BORIS opens."""

from __future__ import annotations

import copy
import csv
import gzip
import json

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import LabelError
from prism_science.labels import (
    BehaviorSet,
    Interval,
    LabelTable,
    Segment,
    read_label_tables,
    read_labels,
    write_labels,
)
from prism_science.labels.formats import ReadReport

from .test_labels_boris import AGGREGATED_HEADER, TABULAR_HEADER, _project

FPS = 25.0
MEDIA = "/data/videos/fly_01.mp4"


def _observation(events, media=(MEDIA,), fps=FPS, length=10.0, coder="", obs_type="MEDIA"):
    """One observation as BORIS 8/9 saves it (copied from the single-observation fixture)."""
    obs = copy.deepcopy(_project(events)["observations"]["obs1"])
    obs["type"] = obs_type
    obs["file"]["1"] = list(media)
    obs["media_info"] = {"length": dict.fromkeys(media, length), "fps": dict.fromkeys(media, fps),
                         "hasVideo": dict.fromkeys(media, True),
                         "hasAudio": dict.fromkeys(media, False), "offset": {"1": 0.0}}
    if obs_type == "LIVE":
        obs["file"] = {str(p): [] for p in range(1, 9)}
        obs["media_info"] = {}
    obs["independent_variables"] = {"coder": coder} if coder else {}
    return obs


def _multi_project(observations: dict) -> dict:
    pj = _project([])
    pj["behaviors_conf"]["4"] = {
        "type": "State event", "key": "g", "code": "groom", "description": "", "color": "",
        "category": "", "excluded": "", "coding map": "",
        "modifiers": {"0": {"name": "body part", "type": 0, "values": ["head", "wings"]}}}
    pj["independent_variables"] = {"0": {"label": "coder", "description": "", "type": "text",
                                         "default value": "", "possible values": ""}}
    pj["observations"] = observations
    return pj


CODER_A = [[1.0, "male", "wing extension", "", "", 25], [2.0, "male", "wing extension", "", "", 50],
           [3.0, "male", "groom", "head", "started on the left", 75],
           [4.0, "male", "groom", "head", "", 100], [5.0, "male", "lunge", "", "", 125]]
CODER_B = [[1.2, "male", "wing extension", "", "", 30], [2.2, "male", "wing extension", "", "", 55],
           [6.0, "female", "groom", "wings", "", 150], [6.4, "female", "groom", "wings", "", 160]]


def _write(tmp_path, pj, name="project.boris"):
    path = tmp_path / name
    path.write_text(json.dumps(pj))
    return path


def test_several_observations_of_one_video_each_become_a_table(tmp_path):
    pj = _multi_project({
        "fly01 coder A": _observation(CODER_A, coder="alice"),
        "fly01 coder B": _observation(CODER_B, coder="bob"),
        # a focal-animal observation of the same video, coded later, and one of another video
        "fly01 female": _observation([[7.0, "female", "lunge", "", "", 175]]),
        "fly02": _observation([[1.0, "", "chase", "", "", 25], [2.0, "", "chase", "", "", 50]],
                              media=("/data/videos/fly_02.mp4",)),
    })
    report = ReadReport()
    tables = read_label_tables(_write(tmp_path, pj), report=report)
    assert set(tables) == {"fly_01/fly01 coder A", "fly_01/fly01 coder B", "fly_01/fly01 female",
                           "fly_02"}
    a, b = tables["fly_01/fly01 coder A"], tables["fly_01/fly01 coder B"]
    assert (a.video_id, a.observation, b.observation) == ("fly_01", "fly01 coder A",
                                                          "fly01 coder B")
    assert {iv.annotator for iv in a.intervals} == {"alice"}
    assert {iv.annotator for iv in b.intervals} == {"bob"}
    # every bout of every observation is there: nothing overwritten
    assert sum(len(t.intervals) for t in tables.values()) == 3 + 2 + 1 + 1
    groom = next(iv for iv in a.intervals if iv.behavior == "groom")
    assert (groom.start_frame, groom.end_frame, groom.modifiers) == (75, 99, "head")
    assert next(iv for iv in b.intervals if iv.behavior == "groom").modifiers == "wings"
    assert [(iv.behavior, iv.start_frame) for iv in a.intervals if iv.n_frames == 1] == \
        [("lunge", 125)]
    assert any("comment" in n for n in report.notes) and not report.skipped


def test_bad_observations_are_skipped_and_reported_the_rest_import(tmp_path):
    pj = _multi_project({
        "good": _observation(CODER_A),
        "two videos": _observation(CODER_B, media=(MEDIA, "/data/videos/fly_01b.mp4")),
        "unpaired": _observation([[1.0, "male", "chase", "", "", 25]],
                                 media=("/data/videos/fly_03.mp4",)),
        "empty": _observation([], media=("/data/videos/fly_04.mp4",)),
        "pictures": dict(_observation(CODER_B, media=("/data/videos/fly_05.mp4",)),
                         type="IMAGES"),
    })
    report = ReadReport()
    tables = read_label_tables(_write(tmp_path, pj), report=report)
    assert list(tables) == ["fly_01"] and len(tables["fly_01"].intervals) == 3
    why = dict(report.skipped)
    assert set(why) == {"observation 'two videos' (fly_01)", "observation 'unpaired' (fly_03)",
                        "observation 'empty' (fly_04)", "observation 'pictures' (fly_05)"}
    assert "plays 2 media files in sequence" in why["observation 'two videos' (fly_01)"]
    assert "never stopped" in why["observation 'unpaired' (fly_03)"]
    assert "no events" in why["observation 'empty' (fly_04)"]
    assert "image directories" in why["observation 'pictures' (fly_05)"]


def test_video_id_applies_while_reading(tmp_path):
    pj = _multi_project({
        "broken": _observation([[1.0, "male", "chase", "", "", 25]],
                               media=("/data/videos/fly_02.mp4",)),
        "fine": _observation(CODER_A),
    })
    path = _write(tmp_path, pj)
    report = ReadReport()
    table = read_labels(path, video_id="fly_01.mp4", report=report)  # the stored id works too
    assert table.observation == "fine" and not report.skipped  # fly_02 was never parsed
    with pytest.raises(LabelError, match="never stopped"):
        read_labels(path, video_id="fly_02")
    with pytest.raises(LabelError, match=r"holds videos \['fly_02', 'fly_01'\], not 'fly_09'"):
        read_labels(path, video_id="fly_09")


def test_gzipped_project_and_empty_inputs(tmp_path):
    pj = _multi_project({"o": _observation(CODER_A)})
    path = tmp_path / "p.boris.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(pj, fh)
    assert len(read_labels(path).intervals) == 3
    with pytest.raises(LabelError, match="holds no labels"):
        read_labels(_write(tmp_path, _multi_project({}), "none.boris"))
    header_only = tmp_path / "agg.csv"
    header_only.write_text(",".join(AGGREGATED_HEADER) + "\n")
    with pytest.raises(LabelError, match="holds no labels"):
        read_labels(header_only)


def _agg9_row(obs, coder, subject, behavior, kind, start, stop, modifier=""):
    """A BORIS 9 aggregated row (independent variable 'coder', one 'Modifier #1' column)."""
    return [obs, "2024-05-02 10:20:00", "", "Media file", f"player #1:{MEDIA}", "0.0", "10.000",
            "10.000", "25.000", coder, subject, "8.0", behavior, "Not defined", modifier, kind,
            f"{start:.3f}", f"{stop:.3f}", f"{stop - start:.3f}" if kind == "STATE" else "NA",
            MEDIA, int(start * FPS), int(stop * FPS), "NA", "NA", "", ""]


AGGREGATED_9 = AGGREGATED_HEADER[:9] + ["coder"] + AGGREGATED_HEADER[9:13] + ["Modifier #1"] \
    + AGGREGATED_HEADER[13:]


def test_grouped_aggregated_export_of_nine_observations_of_one_video(tmp_path):
    rng = np.random.default_rng(0)
    rows, counts = [], [11, 9, 7, 12, 8, 10, 6, 11, 9]  # 83 bouts over 9 observations
    for o, n in enumerate(counts):
        starts = np.sort(rng.choice(np.arange(0, 380), size=n, replace=False)) * 0.025
        for i, start in enumerate(starts):
            kind = "POINT" if i % 4 == 3 else "STATE"
            stop = start if kind == "POINT" else start + 0.02 + 0.01 * (i % 3)
            rows.append(_agg9_row(f"obs{o + 1}", f"coder{o % 3}", f"fly{o}", "groom", kind,
                                  float(start), float(stop), "head" if i % 2 else ""))
    path = tmp_path / "grouped.tsv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh, delimiter="\t").writerows([AGGREGATED_9, *rows])
    tables = read_label_tables(path)
    assert len(tables) == 9 and {t.video_id for t in tables.values()} == {"fly_01"}
    assert sum(len(t.intervals) for t in tables.values()) == 83
    t4 = tables["fly_01/obs4"]
    assert len(t4.intervals) == 12 and {iv.annotator for iv in t4.intervals} == {"coder0"}
    assert {iv.modifiers for iv in t4.intervals} == {"", "head"}


def _tabular9_row(obs, subject, behavior, status, time, media=MEDIA, source=None, fps="25.000",
                  modifier="", offset="0.0"):
    return [obs, "2024-05-02 10:20:00", "", "10.000", "Media file(s)",
            source or f"player #1:{media}", offset, "10.000", fps, "alice", subject, behavior,
            "", modifier, status, f"{time:.3f}", media, int(time * FPS), "NA", ""]


TABULAR_9 = TABULAR_HEADER[:9] + ["coder"] + TABULAR_HEADER[9:12] + ["Modifier #1"] \
    + TABULAR_HEADER[12:]
# BORIS 8.10-8.x: no "Time offset (s)" column
TABULAR_8 = [c for c in TABULAR_HEADER if c != "Time offset (s)"]


def test_tabular_exports_of_boris_7_8_and_9(tmp_path):
    # BORIS 9: observation with a time offset, a modifier column and a coder variable; plus a
    # multi-media observation (two files in player 1, two frame rates), which is skipped
    two = f"player #1:{MEDIA};/data/videos/fly_01b.mp4"
    rows = [_tabular9_row("obs1", "male", "groom", "START", 13.0, modifier="head", offset="10"),
            _tabular9_row("obs1", "male", "groom", "STOP", 14.0, modifier="head", offset="10"),
            _tabular9_row("obs2", "", "chase", "START", 1.0, source=two, fps="25.000;30.000"),
            _tabular9_row("obs2", "", "chase", "STOP", 12.0, source=two, fps="25.000;30.000",
                          media="/data/videos/fly_01b.mp4")]
    path = tmp_path / "boris9.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([TABULAR_9, *rows])
    report = ReadReport()
    tables = read_label_tables(path, report=report)
    (groom,) = tables["fly_01"].intervals
    assert (groom.start_frame, groom.end_frame, groom.modifiers, groom.annotator) == \
        (75, 99, "head", "alice")
    assert "plays 2 media files" in report.skipped[0][1] and "frame rate" not in \
        report.skipped[0][1]
    # BORIS 8.10+: same columns without the time offset
    rows8 = [[r[i] for i, c in enumerate(TABULAR_HEADER) if c != "Time offset (s)"] for r in [
        ["obs8", "", "", "10.000", "Media file(s)", f"player #1:{MEDIA}", "0.0", "10.000",
         "25.000", "male", "chase", "", "START", "2.000", MEDIA, 50, "NA", ""],
        ["obs8", "", "", "10.000", "Media file(s)", f"player #1:{MEDIA}", "0.0", "10.000",
         "25.000", "male", "chase", "", "STOP", "3.000", MEDIA, 75, "NA", ""]]]
    path8 = tmp_path / "boris8.csv"
    with open(path8, "w", newline="") as fh:
        csv.writer(fh).writerows([TABULAR_8, *rows8])
    t8 = read_labels(path8)
    assert (t8.observation, [(iv.start_frame, iv.end_frame) for iv in t8.intervals]) == \
        ("obs8", [(50, 74)])
    # BORIS 7 (and 8.0-8.9): metadata lines, "Player #1", independent variables, Status column
    lines = ["Observation id,obs7", "", "Media file(s)", "", f"Player #1,{MEDIA}", "",
             "Observation date,2021-03-01 10:00:00", "", "Time offset (s),0.0", "",
             "independent variables", "variable,value", "coder,carol", "",
             "Time,Media file path,Total length,FPS,Subject,Behavior,Behavioral category,"
             "Modifier 1,Comment,Status",
             f"1.0,{MEDIA},10.0,25.0,male,groom,,wings,,START",
             f"2.5,{MEDIA},10.0,25.0,male,groom,,wings,,STOP"]
    path7 = tmp_path / "boris7.csv"
    path7.write_text("\n".join(lines) + "\n")
    t7 = read_labels(path7)
    assert t7.observation == "obs7" and t7.video_id == "fly_01" and t7.n_frames == 250
    assert [(iv.start_frame, iv.end_frame, iv.modifiers, iv.annotator)
            for iv in t7.intervals] == [(25, 62, "wings", "carol")]


# --------------------------------------------------------------------------- .boris export
def _boris_pairs(pj: dict, obs_id: str) -> list[tuple]:
    """Bouts of an observation paired the way BORIS pairs them (project_functions.
    events_start_stop: a state event is a STOP when an odd number of events with the same
    subject, code and modifiers come before it), independently of our reader."""
    ethogram = {b["code"]: b for b in pj["behaviors_conf"].values()}
    events = pj["observations"][obs_id]["events"]
    bouts, open_ = [], {}
    for idx, (t, subject, code, modifiers, *_rest) in enumerate(events):
        if ethogram[code]["type"] != "State event":
            bouts.append((subject, code, t, None))
            continue
        before = sum(1 for e in events[:idx] if (e[1], e[2], e[3]) == (subject, code, modifiers))
        if before % 2:
            bouts.append((subject, code, open_.pop((subject, code, modifiers)), t))
        else:
            open_[(subject, code, modifiers)] = t
    assert not open_, f"unpaired state events in {obs_id}: {open_}"
    return sorted(bouts, key=lambda b: (b[2], b[1]))


def test_boris_project_export_opens_in_boris_and_pairs_into_the_same_bouts(tmp_path):
    ts = np.arange(300) / 30.0
    table = LabelTable(
        [Interval("walk", 0, 29, subject="m1", annotator="alice"),
         Interval("walk", 30, 59, subject="m1", annotator="alice"),  # meets the previous one
         Interval("groom", 40, 89, subject="m2", modifiers="head", annotator="alice"),
         Interval("lunge", 100, 100, subject="m1", annotator="alice"),
         Interval("rest", 120, 179, annotator="alice")],
        [Segment(0, 299)], "mouse_3", 300, 30.0, ts,
        BehaviorSet(("walk", "rest", "groom", "lunge"), (("walk", "rest"),)),
        observation="session 3").recompute_seconds()
    path = write_labels(table, tmp_path / "mouse_3.boris", media_path="/videos/mouse_3.mp4")
    pj = json.loads(path.read_text())
    # what BORIS needs to open the project (project_functions.check_project_integrity)
    assert pj["project_format_version"] == "7.0"
    obs = pj["observations"]["session 3"]
    media = obs["file"]["1"][0]
    assert media == "/videos/mouse_3.mp4" and obs["type"] == "MEDIA"
    for info in ("length", "fps", "hasVideo", "hasAudio"):
        assert media in obs["media_info"][info]
    assert obs["media_info"]["fps"][media] == 30.0 and obs["media_info"]["length"][media] == 10.0
    subjects = {s["name"] for s in pj["subjects_conf"].values()}
    codes = {b["code"]: b for b in pj["behaviors_conf"].values()}
    assert {e[1] for e in obs["events"]} - {""} <= subjects
    assert {e[2] for e in obs["events"]} <= set(codes)
    assert [e[0] for e in obs["events"]] == sorted(e[0] for e in obs["events"])
    for e in obs["events"]:  # one modifier value per declared modifier set
        if e[3] or codes[e[2]]["modifiers"]:
            assert len(e[3].split("|")) == len(codes[e[2]]["modifiers"])
    assert codes["lunge"]["type"] == "Point event" and codes["walk"]["excluded"] == "rest"
    assert obs["independent_variables"] == {"coder": "alice"}
    # BORIS's own pairing gives the table's bouts back
    expected = sorted(((iv.subject or "", iv.behavior, round(iv.start_s, 3),
                        None if iv.behavior == "lunge" else round(iv.end_s, 3))
                       for iv in table.intervals), key=lambda b: (b[2], b[1]))
    assert _boris_pairs(pj, "session 3") == expected
    # and our reader reads the same frames, subjects and modifiers back
    back = read_labels(path)
    assert back.observation == "session 3" and back.n_frames == 300
    assert sorted((iv.behavior, iv.subject, iv.start_frame, iv.end_frame, iv.modifiers)
                  for iv in back.intervals) == sorted(
        (iv.behavior, iv.subject, iv.start_frame, iv.end_frame, iv.modifiers)
        for iv in table.intervals)


# --------------------------------------------------------------------------- command line
@pytest.fixture()
def store_path(tmp_path):
    store_mod = pytest.importorskip("prism_science.store")
    path = tmp_path / "features.zarr"
    ts = np.arange(250) / FPS
    with store_mod.open_store(path, mode="a") as store:
        store.put_video("fly_01.mp4", source_path=MEDIA, relative_path="fly_01.mp4",
                        size_bytes=1, content_hash="sha256:0", timestamps=ts, fps=FPS,
                        width=32, height=32)
    return path


def test_cli_imports_each_observation_as_its_own_label_set_with_a_summary(tmp_path, store_path,
                                                                           capsys):
    from prism_science.labels import load_labels
    from prism_science.labels.store_io import list_labels
    from prism_science.store import open_store

    pj = _multi_project({
        "coder A": _observation(CODER_A, coder="alice"),
        "coder B": _observation(CODER_B, coder="bob"),
        "unpaired": _observation([[1.0, "male", "chase", "", "", 25]]),
    })
    assert main(["labels", "import", str(_write(tmp_path, pj)), "--store", str(store_path)]) == 0
    out = capsys.readouterr()
    assert "fly_01.mp4: 3 intervals" in out.out and "fly_01.mp4: 2 intervals" in out.out
    assert "imported 2 table(s) of 1 video(s), 5 intervals; skipped 1" in out.out
    assert "skipped observation 'unpaired' (fly_01):" in out.err and "never stopped" in out.err
    with open_store(store_path, mode="r") as store:
        assert list_labels(store, "fly_01.mp4") == ["manual/coder_A", "manual/coder_B"]
        b = load_labels(store, "fly_01.mp4", "manual/coder_B")
    assert b.observation == "coder B" and {iv.annotator for iv in b.intervals} == {"bob"}
    # the same file to a folder of plain CSVs: one file per observation
    out_dir = tmp_path / "csv"
    assert main(["labels", "import", str(_write(tmp_path, pj)), "--out", str(out_dir)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "fly_01.coder_A.labels.csv", "fly_01.coder_B.labels.csv"]
    assert "groom" in (out_dir / "fly_01.coder_A.labels.csv").read_text()


def test_cli_live_observation_takes_the_stored_video_rate(tmp_path, store_path, capsys):
    live = _observation([[1.0, "male", "chase", "", ""], [2.0, "male", "chase", "", ""]],
                        obs_type="LIVE")
    path = _write(tmp_path, _multi_project({"live session": live}))
    assert main(["labels", "import", str(path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no frame rate" in capsys.readouterr().err
    assert main(["labels", "import", str(path), "--store", str(store_path),
                 "--video-id", "fly_01.mp4"]) == 0
    from prism_science.labels import load_labels
    from prism_science.store import open_store

    with open_store(store_path, mode="r") as store:
        table = load_labels(store, "fly_01.mp4")
    assert [(iv.start_frame, iv.end_frame) for iv in table.intervals] == [(25, 49)]


def test_cli_empty_file_exits_non_zero_with_a_message(tmp_path, capsys):
    path = _write(tmp_path, _multi_project({}), "empty.boris")
    assert main(["labels", "import", str(path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "holds no labels" in capsys.readouterr().err
