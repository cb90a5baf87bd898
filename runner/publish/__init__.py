"""Publishing: the Hugging Face Hub, GitHub (comment, summary) and the Action."""
