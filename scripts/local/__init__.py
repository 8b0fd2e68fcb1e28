"""Local services for tests, the demo and `lanes services`: Redis, moto SQS, the market
simulators and the Lambda event-source emulator."""

__all__: list[str] = []
