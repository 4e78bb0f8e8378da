"""Evidence locker: immutable evidence storage with a verifiable chain-of-custody log."""
