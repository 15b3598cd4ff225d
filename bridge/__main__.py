"""`python -m bridge` and the `bridge` console script: the CLI, imported without the cyclic
garbage collector.

Importing bridge and its libraries creates a few hundred thousand objects that live as long
as the process and frees almost none, yet every 700 allocations start a collection, and the
full ones walk everything imported so far: a tenth of a short run's CPU, for nothing. The
collector is back on before the command runs, which freezes what the imports made
(`cli._lean_gc`).
"""

import gc
from collections.abc import Callable


def load() -> Callable[[], int]:
    """The CLI's `main`, imported with the collector off."""
    gc.disable()
    try:
        from bridge.cli import main
    finally:
        gc.enable()
    return main


def run() -> int:
    return load()()


if __name__ == "__main__":
    raise SystemExit(run())
