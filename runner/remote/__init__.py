"""Training elsewhere: Hugging Face Jobs (dispatch, the job's side, `runner jobs`) and SkyPilot tasks."""
