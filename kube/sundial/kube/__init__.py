"""Sundial's one Kubernetes client layer for the CLI and the dashboard: configuration chosen
as kubectl chooses it, errors mapped one way, and the ScheduledJob resource's address.

(The operator's own wrapper, sundial.operator.kube, is to fold in here next.)
"""
