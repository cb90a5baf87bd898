"""Evaluation: metrics, calibration and thresholds, error analysis, comparisons and the gate."""
