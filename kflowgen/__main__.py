"""`python -m kflowgen` runs the command line."""
from .cli import main

main()
