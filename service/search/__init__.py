"""One search over incidents and items, and the catalogue it reads."""
