"""`python -m kernel` runs the `kernel` command line."""

from .cli.launcher import main

main()
