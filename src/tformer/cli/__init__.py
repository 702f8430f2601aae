"""Command-line interface: ``tformer SUBCOMMAND`` (see tformer.cli.main)."""
