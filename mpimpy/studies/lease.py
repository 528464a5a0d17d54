"""Leases: which runner owns a RUNNING run, and whether that runner is still alive.

One FINISHED run per point, however many runners
    Every run the runner creates carries a lease: the tag ``mpimpy.lease`` (the owner's host,
    pid, a token and the lease's time to live) and ``mpimpy.lease.heartbeat``, which the owner
    renews every quarter of the time to live (:func:`renew`). A lease is *stale* when it was not
    renewed within its time to live, or when its owner ran on this host and its process is gone.
    To claim a point (:func:`mpimpy.studies.store.claim`), a runner creates its run and only
    then looks at the point's other runs: if one is FINISHED, or RUNNING under a live lease, it
    withdraws its own run (deleted) and leaves the point to the other (waiting for its outcome);
    RUNNING runs under stale leases are marked KILLED and the point is taken over. Since every
    claimant creates before it looks, of two claims made at once at least one sees the other, so
    a point never runs twice at a time; two claims that see each other both withdraw and try
    again after a random delay. This works the same on a local store, on a tracking server and
    with workers on other machines (clocks are assumed to agree to well within the time to
    live).

    A worker stops its kernel and does not finish its run when the run is no longer RUNNING
    under its lease (the runner was interrupted, another runner took the point over), when its
    runner's process is gone (same host) or when the lease was not renewed (runner elsewhere):
    a run marked KILLED never becomes FINISHED, and no orphan worker outlives its runner.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

#: Tags of a run's lease: its owner (JSON) and the time of the owner's last renewal.
LEASE_TAG = "mpimpy.lease"
HEARTBEAT_TAG = "mpimpy.lease.heartbeat"
#: A lease not renewed for this long is stale (its runner is taken to be dead).
DEFAULT_LEASE_TTL_S = 60.0


@functools.cache
def node_id() -> str:
    """Where a process id names the same process: this host (its name and boot) and this PID
    namespace. A container sharing the host's name but not its processes has another id, so a
    runner there is never taken for dead because its pid is not visible here."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "/".join(parts)


def process_gone(pid: int) -> bool:
    """Whether the process ``pid`` of this host has exited (a zombie has)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Lease:
    """Who owns a run: a runner's host, pid and token, and how long its lease lives unrenewed.

    ``node`` is the runner's :func:`node_id`: only there can its pid be looked up.
    """

    host: str
    pid: int
    token: str
    ttl_s: float
    node: str = ""

    @classmethod
    def new(cls, ttl_s: float = DEFAULT_LEASE_TTL_S) -> Lease:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex, float(ttl_s), node_id())

    @classmethod
    def of(cls, run) -> Lease | None:
        """The lease of a run, or ``None`` (a run made by an older runner, or by hand)."""
        try:
            return cls(**json.loads(run.data.tags[LEASE_TAG]))
        except (KeyError, TypeError, ValueError):
            return None

    def tags(self) -> dict[str, str]:
        return {LEASE_TAG: json.dumps(asdict(self)), HEARTBEAT_TAG: f"{time.time():.3f}"}

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid}"


def lease_state(run, now: float | None = None) -> tuple[bool, str]:
    """``(live, why)`` for a RUNNING run's lease; see the module docstring."""
    lease = Lease.of(run)
    if lease is None:
        return False, "it has no lease (left by an older runner or made by hand)"
    if lease.node == node_id() and process_gone(lease.pid):
        return False, f"its runner ({lease}) is gone"
    try:
        age = (now or time.time()) - float(run.data.tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        age = float("inf")
    if age > lease.ttl_s:
        return False, f"its runner ({lease}) has not renewed its lease for {age:.0f} s"
    return True, f"held by the runner {lease} (lease renewed {age:.0f} s ago)"


def renew(client, run_ids) -> None:
    """Renew the leases of runs this runner holds (a failed renewal is tried again later)."""
    stamp = f"{time.time():.3f}"
    for run_id in run_ids:
        with contextlib.suppress(Exception):
            client.set_tag(run_id, HEARTBEAT_TAG, stamp)


__all__ = ["DEFAULT_LEASE_TTL_S", "HEARTBEAT_TAG", "LEASE_TAG", "Lease", "lease_state",
           "node_id", "process_gone", "renew"]
