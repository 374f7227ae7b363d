"""Sundial's one Kubernetes client layer, for the operator, the CLI and the dashboard:
configuration chosen as kubectl chooses it (`config`), errors mapped one way (`errors`), the
ScheduledJob resource's address (`resources`), and the operator's calls (`api`).
"""
