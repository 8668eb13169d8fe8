"""Environments as a service (`cua serve-env`): the HTTP server (server.py), its wire
protocol (protocol.py), the client (client.py) and the engine host that drives a remote
environment (remote_host.py)."""
