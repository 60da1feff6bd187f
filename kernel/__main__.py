"""`python -m kernel` runs the `kernel` command line."""

from .cli import main

main()
