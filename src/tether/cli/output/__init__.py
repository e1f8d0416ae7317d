"""tether.cli.output."""
