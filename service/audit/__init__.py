"""The audit trail: custody entries a principal may see, with proofs, and its export formats."""
