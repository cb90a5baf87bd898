"""Data: reading the files, labels, splits, and the checks of the data."""
