"""Court bundles (BagIt zips) and the human-readable reports inside them."""
