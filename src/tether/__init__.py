"""tether: shell, logs and port-forward to remote services over WebSockets."""

__version__ = "0.1.0"
