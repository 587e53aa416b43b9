"""Command line: ``pneumonia-cnn run | train | evaluate | predict | explain | calibrate | adapt |
stress | search | register | close-runs``.
"""

# Layout (for developers):
# One private module per command (``add_parser(sub)`` and ``run(args)``), ``_common`` for what
# they share and ``_main`` for the parser and dispatch. Heavy libraries (TensorFlow, MLflow) are
# imported inside the commands, so ``--help`` answers at once.

from ._main import COMMANDS, build_parser, console_main, main

__all__ = ["COMMANDS", "build_parser", "console_main", "main"]
