"""The custody log as a service: sequencing appends, storing tree nodes, signing checkpoints."""

from service.custody.keys import load_or_create_signer, open_signer
from service.custody.log import AppendedEntry, CustodyLog

__all__ = ["AppendedEntry", "CustodyLog", "load_or_create_signer", "open_signer"]
