"""`python -m kflowgen` runs the command line."""
from kflowgen.cli import main

main()
