"""The reference gateway (asyncio, websockets). Never imports tether.cli."""
