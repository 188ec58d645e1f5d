"""The generator of docs/robustness.md: tables from the modules, hand-written sections kept."""

from __future__ import annotations

from tests.robustness.make_table import (
    GENERATED,
    Outcomes,
    read_module,
    render,
    robustness_modules,
    unwrap,
)

OLD_PAGE = """# Robustness

Intro.

## Summary of the last run

stale numbers

## Hand-written (`test_theirs.py`, needs root)

_Last run: 1 passed._

| fault | outcome |
| --- | --- |
| a full disk | a clear error |

## Notes of someone else

Kept as written.
"""

TABLED = '''"""Kills of a writer.

More words.
"""
ROBUSTNESS_TITLE = "Writer killed"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| the writer killed at every write, a long
  row going on | the file opens |
"""
'''


def test_unwrap_joins_indented_continuations():
    assert unwrap("| a | b |\n| --- | --- |\n| long\n  row | x\n  |\n") == \
        "| a | b |\n| --- | --- |\n| long row | x |"


def test_render_rewrites_tables_and_keeps_other_sections(tmp_path):
    (tmp_path / "test_writer_kill.py").write_text(TABLED)
    (tmp_path / "test_theirs.py").write_text('"""Their tests."""\n')
    (tmp_path / "test_plain.py").write_text('"""Plain cases. Of something."""\n')
    infos = [read_module(tmp_path / name) for name in
             ("test_plain.py", "test_theirs.py", "test_writer_kill.py")]
    assert [i.kind for i in infos] == ["bad inputs", "bad inputs", "faults"]
    results = {
        "test_writer_kill.py": Outcomes(passed=2, counted=40, survived=40),
        "test_theirs.py": Outcomes(passed=1, failed=1, counted=2, survived=1),
        "test_plain.py": Outcomes(passed=1, skipped=1, skip_reasons={"needs root"}, counted=1,
                                  survived=1, cases=[("test_a[x]", "passed"),
                                                     ("test_b", "skipped")]),
    }
    page = render(OLD_PAGE, infos, results, 125.0)
    assert page.startswith("# Robustness\n\nIntro.\n\n" + GENERATED)
    assert "stale numbers" not in page and page.count("## Summary of the last run") == 1
    assert "| `test_writer_kill.py` | faults | 2 / 0 / 0 | 40 / 40 |  |" in page
    assert "| `test_theirs.py` | bad inputs | 1 / 1 / 0 |  | 2 / 1 |" in page
    assert "| **all 3 files** | | 4 / 1 / 1 | 40 / 40 | 3 / 2 |" in page
    # their hand-written section: kept, with this run's line
    theirs = page.split("## Hand-written (`test_theirs.py`, needs root)")[1]
    assert theirs.lstrip().startswith("_Last run: 1 passed, **1 failed**._")
    assert "| a full disk | a clear error |" in theirs and "1 passed._\n\n_Last" not in theirs
    assert "## Notes of someone else\n\nKept as written." in page
    # a module's table, unwrapped, under its title
    assert "## Writer killed (`test_writer_kill.py`)\n\n_Last run: 2 passed._" in page
    assert "| the writer killed at every write, a long row going on | the file opens |" in page
    # a module with neither: its docstring and case ids
    assert "## Plain cases (`test_plain.py`)" in page and "| `test_a[x]` | passed |" in page
    assert "1 skipped (needs root)" in page
    # rendering twice changes nothing but the numbers
    assert render(page, infos, results, 125.0) == page


def test_every_suite_module_is_described():
    infos = robustness_modules()
    names = {i.path.name for i in infos}
    assert "test_make_table.py" not in names and "test_security.py" in names
    for info in infos:
        if info.table:
            rows = unwrap(info.table).splitlines()
            assert rows[:2] == ["| fault or bad input | expected outcome |", "| --- | --- |"]
            assert all(r.startswith("| ") and r.endswith(" |") for r in rows), info.path.name
