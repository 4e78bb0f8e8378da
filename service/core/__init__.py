"""The pure cryptographic core: digests, canonical JSON, Merkle trees, signed checkpoints.

Nothing in this package performs I/O. The server and the offline verifier share it, so
its only dependencies are the standard library, `cryptography`, `rfc8785` and
`service.errors`.
"""
