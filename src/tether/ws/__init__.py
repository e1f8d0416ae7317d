"""Talking WebSocket: classify, protocol, dial, retry, supervise. No Typer, no Rich."""
