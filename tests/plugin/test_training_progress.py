"""Per-epoch training progress: the probes' fit_progress context and train_probe's progress."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.pipeline import train_probe
from prism_science.probes import LinearProbe, MLPProbe, TemporalProbe
from prism_science.probes.base import fit_progress
from prism_science.store import open_store
from tests.pipeline.conftest import make_store


def planted(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(int)


@pytest.mark.parametrize("probe", [
    MLPProbe(max_epochs=7, early_stopping=False, hidden_sizes=(8,)),
    LinearProbe(max_epochs=7, solver="adam", early_stopping=False),
    TemporalProbe(max_epochs=5, early_stopping=False, chunk_length=16, hidden_dim=8, n_layers=1),
])
def test_fit_reports_every_epoch_inside_the_context_only(probe):
    X, y = planted()
    seen: list[tuple[int, int]] = []
    with fit_progress(lambda epoch, n: seen.append((epoch, n))):
        probe.fit(X, y)
    n = probe.max_epochs
    assert seen == [(epoch, n) for epoch in range(1, n + 1)]
    seen.clear()
    probe.fit(X, y)  # outside the block: nothing reported, fit unchanged
    assert seen == []


def test_lbfgs_reports_its_iterations_and_a_raising_callback_stops_the_fit():
    X, y = planted()
    seen: list[tuple[int, int]] = []
    with fit_progress(lambda epoch, n: seen.append((epoch, n))):
        probe = LinearProbe(max_epochs=20).fit(X, y)
    assert seen and seen[-1][0] == probe.n_iter_ <= 20 and all(n == 20 for _, n in seen)
    assert [e for e, _ in seen] == sorted({e for e, _ in seen})

    class Stop(Exception):
        pass

    def stop_at_3(epoch: int, n: int) -> None:
        if epoch == 3:
            raise Stop()

    with fit_progress(stop_at_3), pytest.raises(Stop):
        MLPProbe(max_epochs=50, early_stopping=False).fit(X, y)


def test_train_probe_counts_both_fits_on_one_scale(tmp_path):
    make_store(tmp_path / "s.zarr")
    seen: list[tuple[int, int]] = []
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        result = train_probe(store, "manual", "mlp", params={"max_epochs": 6},
                             progress=lambda epoch, n: seen.append((epoch, n)))
    assert result.split.has_validation
    assert {n for _, n in seen} == {12}  # validation fit + final fit, 6 epochs each
    done = [epoch for epoch, _ in seen]
    assert done == sorted(done) and done[-1] == 12
    assert 6 in done  # the validation fit ends at its share, early stop or not
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        seen.clear()
        train_probe(store, "manual", "mlp", params={"max_epochs": 4}, validation_fraction=0,
                    progress=lambda epoch, n: seen.append((epoch, n)))
    assert {n for _, n in seen} == {4} and seen[-1] == (4, 4)
