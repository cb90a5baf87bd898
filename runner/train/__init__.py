"""Training: the model, the tokens, the Trainer, the pipeline every flow shares, devices and processes."""
