"""``python -m engine.cli``: the same as the `stepwise` console script."""

from engine.cli import main

main()
