"""The `composer` command line (typer)."""
