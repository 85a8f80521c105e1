"""Helpers for tests and users: a multi-node cluster on one machine."""

from lineagerun.testing.cluster import Cluster, ClusterNode

__all__ = ["Cluster", "ClusterNode"]
