"""The training data: clicks read from the database, turned into DPO pairs, snapshotted and exported."""
