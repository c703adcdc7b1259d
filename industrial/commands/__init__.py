"""The ``industrial`` commands: one module per subcommand, each exposing ``main(argv) -> int``
(a job too large to sit beside its command line has a sibling module: ``extract_job``).

The top layer: a command reads its arguments, builds what it needs from the library layers below
(data, modules, objectives, distributed, recipes, train, evaluate) and prints what it did. No
library module imports a command (``tests/test_layers.py``).
"""
