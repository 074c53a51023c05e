"""Evaluation of predicted stress: the accuracy metric, the dataset-only baselines, generation and parsing."""
