"""The flows: the run top to bottom (recipe), the single run, cross-validation, search, reproduce."""
