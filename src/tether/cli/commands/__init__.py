"""tether.cli.commands."""
