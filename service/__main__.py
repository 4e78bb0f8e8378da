"""`python -m service` is the `locker` command."""

from service.cli import main

main()
