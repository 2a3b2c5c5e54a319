"""Evaluation: saved test maps -> the five metrics per class, heat maps. No model, no torch."""
