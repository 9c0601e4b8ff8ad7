"""`python -m cli ...` runs the `composer` command (how `composer train --devices N` starts torchrun)."""

from .app import main

main()
