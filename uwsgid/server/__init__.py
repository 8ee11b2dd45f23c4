"""Processes: the master, the workers and their loops, the router, reloads, daemonizing."""
