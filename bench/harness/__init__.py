"""The side-by-side benchmark harness: servers (ours and the peers), load generators, scenarios, report."""
