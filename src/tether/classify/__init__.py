"""tether.classify."""
