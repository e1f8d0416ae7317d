"""``python -m tether``."""

from tether.cli.app import main

main()
