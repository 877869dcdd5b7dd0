"""Training from the web's side: a run's settings (spec) and queueing it on RQ (jobs)."""
