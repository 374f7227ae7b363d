"""Sundial beside its peers (BullMQ, arq): one harness, one Redis, one way to measure; see bench/side_by_side.py."""
