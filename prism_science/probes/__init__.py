"""Probes: small scikit-learn-style classifiers trained on frozen encoder features."""
