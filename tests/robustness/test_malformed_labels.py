"""Malformed label files of every text format through `prism-science labels import`.

Each case is a good file of one format, spoiled in one way: cut short, emptied, a number
replaced by text, ``inf``, ``nan``, a negative or a huge value, frames reversed. Whatever the
spoiling, the command either imports (the value happened not to matter) or exits 2 with a message
naming the file, never a traceback. The cases known to be wrong always exit 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.labels import read_labels, write_labels
from tests.labels.test_labels_boris import _write_project

ROBUSTNESS_TITLE = "Malformed label files"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| a good file of every text format (BORIS project, BORIS tabular and aggregated exports, plain
  CSV, DeepEthogram, KABR, CalMS21) spoiled every way: emptied, cut at half and mid-line, each
  of its first 70 numbers replaced by text, `inf`, `-inf`, `nan`, `-5`, `1e400`, blank (JSON:
  `"abc"`, `Infinity`, `NaN`, `1e400`, `null`, `[]`, `{}`), through `labels import --out` | exit
  0 (the value did not matter) or exit 2 with a message naming the file; never a traceback |
| 23 known-bad files: a `.boris` whose fps is text, infinite or negative, time offset text, an
  event time infinite or text, truncated JSON; tabular time `inf` / text, FPS text; CSV frames
  reversed, negative, text, infinite, empty file; DeepEthogram value text, header cut; KABR
  label text, negative frame; CalMS21 annotations a string or infinite; aggregated start `inf`,
  stop before start | exit 2, the file named, no traceback (the `.boris` fps as text was a
  `ValueError` and an infinite CalMS21 class an `OverflowError`) |
"""

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
SPOILERS = ("abc", "inf", "-inf", "nan", "-5", "1e400", "")
JSON_SPOILERS = ('"abc"', "Infinity", "-Infinity", "NaN", "-5", "1e400", "null", "[]", "{}")


def _good_files(folder: Path) -> dict[str, Path]:
    """A small valid file of every text format (name -> path)."""
    table = read_labels(_write_project(folder))
    files: dict[str, Path] = {}
    for fmt, name in [("boris", "p.boris"), ("boris-tabular", "t.csv"), ("csv", "c.csv")]:
        files[fmt] = folder / name
        write_labels(table, files[fmt], fmt)
    files["deepethogram"] = folder / "d_labels.csv"  # one animal a file: written by hand
    files["deepethogram"].write_text(",background,groom\n" + "".join(
        f"{i},{int(i < 3)},{int(i >= 3)}\n" for i in range(6)))
    files["kabr"] = folder / "kabr.csv"
    files["kabr"].write_text("original_vido_id video_id frame_id path labels\n" + "".join(
        f"G0001 1 {i + 1} G0001/{i + 1}.jpg {v}\n" for i, v in enumerate([0, 0, 1, 1])))
    files["calms21"] = folder / "calms21.json"
    files["calms21"].write_text(json.dumps({"annotator-id_0": {"task1/train/mouse001": {
        "keypoints": np.zeros((4, 2, 2, 7)).tolist(), "scores": np.ones((4, 2, 7)).tolist(),
        "annotations": [0, 1, 1, 3],
        "metadata": {"annotator-id": 0,
                     "vocab": {"attack": 0, "investigation": 1, "mount": 2, "other": 3}}}}}))
    files["boris-aggregated"] = folder / "agg.tsv"
    files["boris-aggregated"].write_text(
        "Observation id\tMedia file name\tFPS\tSubject\tBehavior\tBehavior type\tStart (s)\t"
        "Stop (s)\tDuration (s)\n"
        "obs1\tfly_01.mp4\t25\tmale\twing\tSTATE\t1.0\t2.0\t1.0\n"
        "obs1\tfly_01.mp4\t25\tmale\tlunge\tPOINT\t3.0\t3.0\t0\n")
    return files


def _variants(text: str, spoilers: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, content) spoilings of a good file's text."""
    out = [("empty", ""), ("truncated", text[: len(text) // 2]),
           ("truncated-line", text[: text.rfind("\n", 0, len(text) - 2) + 6])]
    numbers = list(NUMBER.finditer(text))
    for k, match in enumerate(numbers[:70]):
        for spoiler in spoilers:
            out.append((f"number{k}={spoiler or 'blank'}",
                        text[: match.start()] + spoiler + text[match.end():]))
    return out


def _import(path: Path, fmt: str, out: Path, capsys) -> tuple[int, str]:
    code = main(["labels", "import", str(path), "--format", fmt, "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.err


FORMATS = ("boris", "boris-tabular", "csv", "deepethogram", "kabr", "calms21",
           "boris-aggregated")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_spoiling_ends_in_an_import_or_a_message(fmt, tmp_path, capsys, record_property):
    good = _good_files(tmp_path)[fmt]
    code, err = _import(good, fmt, tmp_path / "good_out", capsys)
    assert code == 0, err
    text = good.read_text()
    failures = []
    spoilers = JSON_SPOILERS if good.suffix in (".boris", ".json") else SPOILERS
    counts = {0: 0, 2: 0}
    variants = _variants(text, spoilers)
    record_property("inputs", len(variants))
    for name, content in variants:
        bad = tmp_path / f"bad-{fmt}{good.suffix}"
        bad.write_text(content)
        out = tmp_path / "out" / name.replace("=", "_")
        try:
            code, err = _import(bad, fmt, out, capsys)
        except Exception as exc:  # a traceback: what this test is for
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        counts[code] = counts.get(code, 0) + 1
        if code not in (0, 2):
            failures.append(f"{name}: exit {code}")
        elif code == 2 and bad.name not in err:
            failures.append(f"{name}: message does not name the file: {err.strip()[:200]}")
    assert not failures, "\n".join(failures)
    assert counts[2] >= 3, counts  # the spoilings are seen


def _edit_project(text: str, edit) -> str:
    project = json.loads(text)
    edit(next(iter(project["observations"].values())))
    return json.dumps(project)


def _set_fps(obs, value):
    media = obs["file"]["1"][0]
    obs.setdefault("media_info", {}).setdefault("fps", {})[media] = value


def _set_first_time(obs, value):
    obs["events"][0][0] = value


KNOWN_BAD = {
    "boris fps as text": ("boris", lambda t: _edit_project(t, lambda o: _set_fps(o, "fast"))),
    "boris fps infinite": ("boris", lambda t: _edit_project(t, lambda o: _set_fps(o, 1e400))),
    "boris fps negative": ("boris", lambda t: _edit_project(t, lambda o: _set_fps(o, -25))),
    "boris offset as text": ("boris", lambda t: _edit_project(
        t, lambda o: o.__setitem__("time offset", "soon"))),
    "boris event time infinite": ("boris", lambda t: _edit_project(
        t, lambda o: _set_first_time(o, 1e400))),
    "boris event time text": ("boris", lambda t: _edit_project(
        t, lambda o: _set_first_time(o, "one"))),
    "boris truncated": ("boris", lambda t: t[: len(t) // 3]),
    "tabular time inf": ("boris-tabular", lambda t: t.replace(",START,1.000,", ",START,inf,")),
    "tabular time text": ("boris-tabular", lambda t: t.replace(",START,1.000,", ",START,x,")),
    "tabular fps text": ("boris-tabular", lambda t: t.replace(",10.000,25.000,", ",10.000,x,")),
    "csv reversed frames": ("csv", lambda t: t.replace(",25,49,1,2,", ",49,25,2,1,")),
    "csv negative frame": ("csv", lambda t: t.replace(",25,49,1,2,", ",-25,49,1,2,")),
    "csv frame as text": ("csv", lambda t: t.replace(",25,49,1,2,", ",x,49,1,2,")),
    "csv frame infinite": ("csv", lambda t: t.replace(",25,49,1,2,", ",inf,49,1,2,")),
    "csv empty": ("csv", lambda t: ""),
    "deepethogram value text": ("deepethogram", lambda t: t.replace("\n2,1,0\n", "\n2,1,x\n")),
    "deepethogram truncated header": ("deepethogram", lambda t: ",backgr"),
    "kabr label text": ("kabr", lambda t: t.replace(".jpg 1\n", ".jpg walk\n", 1)),
    "kabr frame negative": ("kabr", lambda t: t.replace(" 1 G0001/1.jpg", " -1 G0001/1.jpg")),
    "calms21 annotations text": ("calms21", lambda t: t.replace('"annotations": [0, 1, 1, 3]',
                                                                '"annotations": "0113"')),
    "calms21 annotation infinite": ("calms21", lambda t: t.replace(
        '"annotations": [0, 1, 1, 3]', '"annotations": [0, 1, 1e400, 3]')),
    "aggregated start inf": ("boris-aggregated", lambda t: t.replace("\t1.0\t2.0\t",
                                                                     "\tinf\t2.0\t")),
    "aggregated stop before start": ("boris-aggregated", lambda t: t.replace("\t1.0\t2.0\t",
                                                                             "\t2.0\t1.0\t")),
}


@pytest.mark.parametrize("case", sorted(KNOWN_BAD))
def test_known_bad_file_exits_2_naming_it(case, tmp_path, capsys):
    fmt, spoil = KNOWN_BAD[case]
    good = _good_files(tmp_path)[fmt]
    text = good.read_text()
    bad_text = spoil(text)
    assert bad_text != text
    bad = tmp_path / f"bad{good.suffix}"
    bad.write_text(bad_text)
    code, err = _import(bad, fmt, tmp_path / "out", capsys)
    assert code == 2, err
    assert bad.name in err and "Traceback" not in err
