"""`lanes demo`: the whole system on this machine, its burst, measurements, view and chart."""

__all__: list[str] = []
