"""scikit-learn's estimator checks on every probe, with the expected failures documented.

Expected failures (by design, not bugs):

- ``check_sample_weight_equivalence_on_dense_data``: training is stochastic mini-batch AdamW
  with early stopping, so weight 2 is not bit-identical to a duplicated sample.
- ``check_supervised_y_2d``: a 2-D ``y`` is the multi-label frames x behaviors matrix
  (-1/0/1), not a column vector of class labels.
- TemporalProbe ``check_methods_subset_invariance`` / ``check_methods_sample_order_invariance``:
  it is a sequence model; a frame's prediction depends on its neighbouring rows.

All probes share one training engine (``BaseProbe``). LinearProbe runs every check with a
normal training budget; the MLP, attention and temporal probes run them with a few epochs to
keep the suite fast, so the checks that demand a well-trained classifier are expected to fail
for them (their accuracy is tested in test_probe_estimators.py).
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from prism_science.probes import AttentionProbe, LinearProbe, MLPProbe, TemporalProbe

COMMON_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data":
        "stochastic mini-batch training: weights are not exactly duplicated samples",
    "check_supervised_y_2d": "2-D y is the multi-label frames x behaviors matrix",
}
SEQUENCE_FAILURES = {
    "check_methods_subset_invariance": "sequence model: predictions depend on neighbouring rows",
    "check_methods_sample_order_invariance":
        "sequence model: predictions depend on neighbouring rows",
}


ACCURACY_CHECKS = {
    "check_classifiers_train": "trained for 3 epochs here (speed); accuracy tested elsewhere",
    "check_class_weight_classifiers":
        "trained for 3 epochs here (speed); class weights tested elsewhere",
}


def expected_failures(estimator):
    failures = dict(COMMON_FAILURES)
    if not isinstance(estimator, LinearProbe):
        failures.update(ACCURACY_CHECKS)
    if isinstance(estimator, TemporalProbe):
        failures.update(SEQUENCE_FAILURES)
    return failures


FEW = {"max_epochs": 3, "random_state": 0}
ESTIMATORS = [
    LinearProbe(max_epochs=40, random_state=0),
    MLPProbe(hidden_sizes=(8,), **FEW),
    AttentionProbe(hidden_dim=4, n_heads=2, **FEW),
    TemporalProbe(hidden_dim=4, n_layers=2, **FEW),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_compatible_probe(estimator, check):
    check(estimator)
