"""What an operator runs: fsck, readiness, the demo."""
