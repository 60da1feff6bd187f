"""`python -m kernel` runs the `kernel` command line."""

from .launcher import main

main()
