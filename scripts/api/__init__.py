"""The HTTP API (`lanes api`, and its Lambda handler `scripts.api.app.handler`): the app,
its routes, the key gate, the request and answer models, the jobs it sends and the board."""

__all__: list[str] = []
