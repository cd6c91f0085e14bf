"""The study: one command from checkpoints to report, resumable unit by unit."""
