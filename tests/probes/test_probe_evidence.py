"""The probe evidence benchmark's core (benchmarks/probe_evidence.py) on 2 tiny synthetic clips."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prism_science.synth import BEHAVIORS, SynthConfig

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "probe_evidence.py"


@pytest.fixture(scope="module")
def evidence():
    spec = importlib.util.spec_from_file_location("probe_evidence", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["probe_evidence"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("probe_evidence", None)


@pytest.fixture(scope="module")
def result(evidence, tmp_path_factory):
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("evidence")
    config = SynthConfig(size=(32, 32), fps=10.0, seconds=(3.0, 3.0), n_animals=2,
                         noise=(0.0, 0.0), blur=(0.0, 0.0))
    # seed 1: both clips show "rest" and "approach", so some behaviors train and score
    run = evidence.run_benchmark("prism-test-p8-f4-r32", cache, quick=True, n_train=1,
                                 n_test=1, synth_seed=1, synth_config=config, fly=False,
                                 max_epochs=2)
    return run, cache


def test_table_has_every_method_and_ap_in_unit_interval(evidence, result):
    run, _ = result
    assert list(run.tables) == ["synthetic"]
    rows = run.tables["synthetic"]
    encoder_rows = [f"{enc} + {kind}" for enc in ("encoder", "random encoder")
                    for kind in evidence.PROBE_KINDS]
    expected = ["chance (test prevalence)", *encoder_rows, "pixels + PCA + logreg"]
    assert [r.method for r in rows] == expected
    for row in rows:
        assert row.ap.shape == (len(BEHAVIORS),)
        finite = row.ap[np.isfinite(row.ap)]
        assert finite.size > 0, f"{row.method}: no behavior scored"
        assert ((finite >= 0) & (finite <= 1)).all()
        assert 0.0 <= row.mean_ap <= 1.0
        assert row.seconds >= 0.0


def test_features_cached_and_markdown_written(evidence, result):
    run, cache = result
    stores = sorted(p.parent.name for p in cache.glob("*/synthetic.zarr"))
    assert len(stores) == 2  # the model and its random-weight twin, keyed by weights sha
    assert any(cache.glob("pixels/*.npy"))
    text = evidence.format_result(run, "python benchmarks/probe_evidence.py --quick")
    assert "## synthetic" in text and "pixels + PCA + logreg" in text
    assert "Best encoder probe: encoder + " in text
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert header.split(" | ")[1:-3] == list(BEHAVIORS)
    assert any(step.startswith("synthetic: encoder features") for step, _ in run.timings)
