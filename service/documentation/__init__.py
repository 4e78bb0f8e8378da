"""What investigators record: incidents, links, notes, their versions and vocabularies."""
