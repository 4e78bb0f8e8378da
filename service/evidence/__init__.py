"""Evidence items: intake, reading, asserted descriptions and extracted metadata."""
