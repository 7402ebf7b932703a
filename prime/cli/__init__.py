"""The ``prime`` command line: one module per subcommand (:mod:`prime.cli.main` dispatches)."""
