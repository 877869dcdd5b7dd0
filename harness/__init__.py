"""What the tests and the benchmarks share: live gunicorn, workers and nodes, an S3 server, Postgres resets,
starters published into a store, and a small HTTP client. Neither imports the other's files."""
