"""Market clients, auth schemes, endpoint catalogues, jobs and local simulators."""
