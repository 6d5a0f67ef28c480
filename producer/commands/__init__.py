"""The `tensorq` sub-commands, one module per area; `producer/cli.py` gathers them."""
