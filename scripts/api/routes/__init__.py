"""The API's routes, one router per concern: `jobs` (jobs in), `markets` (a market call
now), `status` (job status, budgets and queues, health); the board's pages and data are
`scripts.api.board`, its operator actions `control`. A new route is its handler and its
registration in its concern's module; `scripts.api.app` only assembles the routers."""

__all__: list[str] = []
