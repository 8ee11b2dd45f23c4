"""Sockets, the event loop, connections, wire protocols and the request object."""
