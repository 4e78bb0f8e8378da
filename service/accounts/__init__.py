"""Organisations, members and API keys; who may do what and see which item."""
