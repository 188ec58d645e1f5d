"""prism_training: two-stage VideoPrism-style pretraining (stage 1, stage 2, LiT) and its engine."""
