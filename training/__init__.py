"""prism_training: the two-stage VideoPrism-style pretraining pipeline (installed as ``prism_training``)."""
