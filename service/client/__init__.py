"""The offline side: uploader, verifier, monitor and their commands (core and errors only)."""
