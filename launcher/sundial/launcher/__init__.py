"""The launcher: the worker pool that runs jobTemplate jobs as batch/v1 Jobs, the one Sundial
process besides the operator with Kubernetes credentials."""
