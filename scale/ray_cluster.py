"""Connecting to a Ray cluster, with a small footprint on this machine."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import ray

# What every lipstream task runs with: one thread per library, as the local render
# processes (Ray counts a task as one CPU; OpenMP would otherwise take them all).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1"}
FORWARDED_ENV = ("LIPSTREAM_MAX_SIDE",)
NAMESPACE = "lipstream"


class ClusterUnavailable(RuntimeError):
    """``--ray ADDRESS``: no cluster there, or Ray is not installed."""


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    nodes: int
    cpus: float


def connect(address: str) -> ClusterInfo:
    """Join the cluster at ``address`` (host:port of its head, or "auto") as a driver.

    This machine must itself be a node of the cluster (``ray start --address``):
    the progress board lives here, and results are fetched through the local object
    store.  Connecting twice is a no-op.
    """
    if not ray.is_initialized():
        env = dict(WORKER_ENV)
        for name in FORWARDED_ENV:   # settings that change what a worker produces travel with it
            if os.environ.get(name):
                env[name] = os.environ[name]
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING,
                     log_to_driver=False, runtime_env={"env_vars": env})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterUnavailable(f"no Ray cluster at {address}: {exc}") from None
    return info(address)


def info(address: str = "") -> ClusterInfo:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return ClusterInfo(address, len(nodes), float(ray.cluster_resources().get("CPU", 0.0)))


def this_node() -> str:
    return ray.get_runtime_context().get_node_id()
