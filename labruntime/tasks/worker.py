"""Where tasks run: a :class:`WorkerGroup` of runner threads with one heartbeat lease, and
:func:`run_worker`, the one way a process runs as a worker.

A group is one *worker* for Redis (one id, one lease, one stop channel) with N runner threads.
Web processes start one lazily (WEBLAB_TASK_THREADS_PROCESS threads); :func:`run_worker` runs
one in the calling process, for ``run-tasks`` and ``loop`` (the commands and ``WebLab``'s
methods of the same names alike). Threads of a group:

- runners: block on the queue (BLMOVE, so a ``.delay()`` wakes one within milliseconds; up to
  TAKE_BLOCK seconds, on connections named after the worker, which ``stop()`` wakes at once
  with CLIENT UNBLOCK), claim the task atomically, run it (see :mod:`.runner`), store its
  final state;
- heartbeat: one round trip every HEARTBEAT seconds renews the lease (and the unique locks of
  the tasks it runs), re-reads their stop flags (a safety net for lost pub/sub messages) and
  reads what the reaper pass needs; the pass reaps dead
  workers: their running tasks fail with ``worker-lost`` within LEASE + HEARTBEAT +
  REAP_GRACE seconds (at once when the lease lapsed and the process is seen gone on this
  host); it also requeues ids a lost BLMOVE reply stranded in its own processing list;
- Redis outages: a worker whose lease lapsed while Redis was unreachable renews it (its
  running tasks are still its own) at its first beat once Redis is back, before any reaper
  may fail them: reapers count REAP_GRACE from the first pass that *sees* the lapse (see
  :mod:`labruntime.store.tasks`). Failures are reported through the connection's
  OutageLog: one line per interval, no traceback per beat;
- stop listener: pub/sub on the worker's stop channel (blocking LISTEN_BLOCK seconds; ``stop()``
  wakes it with an empty message); sets the running task's local Event, which is what
  ``current_task_stopping`` reads.

At rest a worker wakes every 2 s (its beat), not a dozen times a second.

``stop(timeout)`` is the graceful end (SIGTERM): take no more tasks, raise ``stopping`` on the
running ones, wait for them up to the deadline, then retire (what still runs is marked
``worker-lost``; what was taken but not started goes back to the queue). :func:`run_worker`
stops in this order: the tasks, then the devices (driven safe, released), then the cleaner.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .runner import StopEvent, run_claimed
from .service import TaskService

log = logging.getLogger(__name__)

__all__ = ["HEARTBEAT", "LEASE", "WorkerGroup", "WorkerOutcome", "run_worker"]

# seconds between beats (lease renewals and reaper passes): a beat wakes the worker and Redis
# (an append-only write), most of an idle lab's cost; LEASE + HEARTBEAT + REAP_GRACE = 10 s
HEARTBEAT = 2.0
LEASE = 4.0  # seconds a worker's lease lasts without renewal (a late beat: REAP_GRACE more)
# seconds a runner blocks on the queue (store.tasks.TAKE_BLOCK_MAX): stop() wakes blocked
# runners at once (CLIENT UNBLOCK), so this only bounds how long a runner stuck on a
# connection that died silently may wait; each runner at rest: 2 round trips a minute
TAKE_BLOCK = 30.0
# seconds the stop listener waits for a message (stop() wakes it at once; no round trip)
LISTEN_BLOCK = 30.0
UNBLOCK_EVERY = 0.5  # seconds between stop()'s wake-ups of runners still blocked


class WorkerGroup:
    """N runner threads sharing one worker id and lease.

    ``drain=True`` (``run-tasks``): runners take what is queued now and return when the queue
    is empty, instead of blocking for more.
    """

    def __init__(
        self,
        tasks: TaskService,
        threads: int = 3,
        *,
        pools: tuple[str, ...] = ("default",),
        drain: bool = False,
        kind: str = "threads",
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads={threads} is invalid: a worker needs at least 1 thread")
        self.tasks = tasks
        self.store = tasks.store
        self.pools = tuple(pools) or ("default",)
        self.threads = max(threads, len(self.pools))  # at least one runner per pool
        self.drain = drain
        host = socket.gethostname()
        self.worker_id = f"{host}:{os.getpid()}:{os.urandom(4).hex()}"
        self.info = {"host": host, "pid": os.getpid(), "kind": kind, "started": time.time()}
        self.running: dict[str, threading.Event] = {}
        self._running_lock = threading.Lock()
        self._no_more = threading.Event()  # runners take no more tasks
        self._closed = threading.Event()  # heartbeat and listener end
        self._runners: list[threading.Thread] = []
        self._service: list[threading.Thread] = []
        self._listener: Any = None
        self.started = False
        # drain mode: called once, when a runner first finds its queue empty, to close
        # admission (a device holder's leases); runners then take what was queued meanwhile
        self.close_admission: Callable[[], object] | None = None
        self._admission_closed = threading.Event()
        self._admission_lock = threading.Lock()

    def add_pools(self, pools: list[str]) -> None:
        """Also take tasks from ``pools`` (before start(): the device pools of a holder)."""
        if self.started:
            raise RuntimeError("add_pools() must be called before start()")
        new = [p for p in pools if p not in self.pools]
        self.pools += tuple(new)
        self.threads += len(new)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> WorkerGroup:
        self.store.heartbeat(self.worker_id, LEASE, self.info)
        self._listener = self.store.stop_listener(self.worker_id)
        self._service = [
            threading.Thread(target=self._heartbeat_loop, name="weblab-heartbeat", daemon=True),
            threading.Thread(target=self._listen_loop, name="weblab-stop-listener", daemon=True),
        ]
        pools = [self.pools[i % len(self.pools)] for i in range(self.threads)]
        self._runners = [
            threading.Thread(
                target=self._runner_loop, args=(pool,), name=f"weblab-task-{n}", daemon=True
            )
            for n, pool in enumerate(pools, 1)
        ]
        for thread in self._service + self._runners:
            thread.start()
        self.started = True
        log.info("worker %s: %d runner thread(s) on %s", self.worker_id, self.threads, pools)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the runners to end (drain mode: the queue is empty). True if they did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._runners:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return not any(t.is_alive() for t in self._runners)

    def stop(self, timeout: float = 10.0) -> bool:
        """Take no more tasks, stop the running ones, wait up to ``timeout`` s, retire.
        True if every task ended in time."""
        if not self.started:
            return True
        self._no_more.set()
        for task_id in self._running_ids():
            self._raise_stop(task_id, remote=True)
        clean = self._wait_runners(timeout)
        self._closed.set()
        self._wake(self.store.wake_stop_listener)
        for thread in self._service:
            thread.join(HEARTBEAT + 1)
        self._wake(self.store.release_takers)
        try:
            lost = self.store.retire(self.worker_id)
        except Exception:  # noqa: BLE001 - the lease expires anyway; others will reap
            log.warning("worker %s: cannot retire cleanly", self.worker_id, exc_info=True)
            lost = -1
        if lost > 0:
            log.warning(
                "worker %s: %d task(s) still running at exit: worker-lost", self.worker_id, lost
            )
        self.started = False
        return clean

    def _wait_runners(self, timeout: float) -> bool:
        """wait(), waking the runners blocked on the queue (again every UNBLOCK_EVERY s: one
        may have been about to block when it was woken)."""
        if self.drain:
            return self.wait(timeout)
        deadline = time.monotonic() + timeout
        while True:
            self._wake(self.store.unblock_takers)
            left = deadline - time.monotonic()
            if self.wait(max(0.0, min(UNBLOCK_EVERY, left))) or left <= UNBLOCK_EVERY:
                return self.wait(0)

    def _wake(self, call: Callable[[str], object]) -> None:
        try:
            call(self.worker_id)
        except Exception:  # noqa: BLE001 - Redis out: the blocked calls end by themselves
            log.debug("worker %s: %s failed", self.worker_id, call.__name__, exc_info=True)

    # -- helpers ---------------------------------------------------------------------------
    def _running_ids(self) -> list[str]:
        with self._running_lock:
            return list(self.running)

    def _raise_stop(self, task_id: str, remote: bool = False) -> None:
        with self._running_lock:
            event = self.running.get(task_id)
        if event is not None:
            event.set()
        if remote:
            try:
                self.store.stop(task_id)
            except Exception:  # noqa: BLE001 - the local flag is what the task reads
                log.warning("cannot flag task %s as stopping", task_id, exc_info=True)

    # -- threads ---------------------------------------------------------------------------
    def _close_admission(self) -> None:
        """Drain mode: no new task may be queued for us (once; the others wait for it)."""
        with self._admission_lock:
            if not self._admission_closed.is_set():
                if self.close_admission is not None:
                    self.close_admission()
                self._admission_closed.set()

    def _runner_loop(self, pool: str) -> None:
        while not self._no_more.is_set():
            # drain mode ends on an empty queue seen *after* admission closed: a task admitted
            # before that is in the queue by then (admission and queueing are one Lua step)
            closed = self._admission_closed.is_set()
            try:
                task_id = self.store.take(pool, self.worker_id, 0 if self.drain else TAKE_BLOCK)
            except Exception as error:  # noqa: BLE001 - Redis restarting: wait and retry
                self.store.outage.failed(f"worker {self.worker_id}: reading the queue", error)
                self._no_more.wait(1.0)
                continue
            if task_id is None:
                if self.drain:
                    if closed:
                        return
                    try:
                        self._close_admission()
                    except Exception:  # noqa: BLE001 - Redis restarting: retry on next pass
                        log.warning(
                            "worker %s: cannot close admission", self.worker_id, exc_info=True
                        )
                        self._no_more.wait(1.0)
                continue
            if self._no_more.is_set():
                self.store.requeue(task_id, self.worker_id, pool)
                return
            self._run_one(task_id)

    def _run_one(self, task_id: str) -> None:
        event = StopEvent()
        with self._running_lock:
            self.running[task_id] = event
        try:
            record = self.store.claim(task_id, self.worker_id, LEASE)
            if record is None:
                return  # stopped, finalized or claimed elsewhere: never run it
            if record.stopping:
                event.set()
            run_claimed(self.tasks, record, event, self.worker_id)
        except Exception:  # noqa: BLE001 - a runner thread never dies
            log.exception("worker %s: task %s could not be run", self.worker_id, task_id)
        finally:
            with self._running_lock:
                self.running.pop(task_id, None)

    def _heartbeat_loop(self) -> None:
        suspects: set[str] = set()
        last_beat = time.monotonic()
        while not self._closed.wait(HEARTBEAT):
            try:  # one round trip: the beat, and what the reaper pass needs
                beat = self.store.beat(self.worker_id, LEASE, self.info)
            except Exception as error:  # noqa: BLE001 - keep beating; Redis may come back
                self.store.outage.failed(f"worker {self.worker_id}: heartbeat", error)
                continue
            gap, last_beat = time.monotonic() - last_beat, time.monotonic()
            if gap > LEASE:
                log.warning(
                    "worker %s: no heartbeat for %.1f s (over the %g s lease: Redis was "
                    "unreachable or this process stalled); lease renewed, %d task(s) running "
                    "here",
                    self.worker_id,
                    gap,
                    LEASE,
                    len(self._running_ids()),
                )
            self.store.outage.ok()
            for task_id in beat.stopping:
                self._raise_stop(task_id)
            try:
                if beat.lapsed:
                    self.store.reap_lapsed(beat.lapsed)
                suspects = self._requeue_strays(suspects, beat.processing)
            except Exception as error:  # noqa: BLE001 - keep beating; Redis may come back
                self.store.outage.failed(f"worker {self.worker_id}: reaper pass", error)

    def _requeue_strays(self, suspects: set[str], processing: list[str]) -> set[str]:
        """Ids left in our processing list (``processing``, read by the beat) by a lost
        BLMOVE reply (a broken connection) would never run: give back those seen unclaimed on
        two beats in a row. Harmless if a runner claims one meanwhile: the queue copy is then
        refused by the claim script."""
        taken = set(processing) - set(self._running_ids())
        for task_id in taken & suspects:
            log.warning(
                "worker %s: task %s was taken but never claimed; requeued", self.worker_id, task_id
            )
            self.store.requeue(task_id, self.worker_id, self._pool_of(task_id))
        return taken - suspects

    def _pool_of(self, task_id: str) -> str:
        record = self.store.get(task_id)
        return record.pool if record is not None else "default"

    def _listen_loop(self) -> None:
        listener = self._listener
        while not self._closed.is_set():
            try:
                if listener is None:
                    listener = self._listener = self.store.stop_listener(self.worker_id)
                task_id = listener.get(timeout=LISTEN_BLOCK)
            except Exception as error:  # noqa: BLE001 - the heartbeat re-reads stop flags
                self.store.outage.failed(f"worker {self.worker_id}: stop listener", error)
                if listener is not None:
                    _close_quietly(listener)
                listener = self._listener = None
                self._closed.wait(1.0)
                continue
            if task_id:  # "": stop() waking us
                self._raise_stop(task_id)
        if listener is not None:
            _close_quietly(listener)


def _close_quietly(listener: Any) -> None:
    try:
        listener.close()
    except Exception:  # noqa: BLE001 - closing a broken connection
        log.debug("closing the stop listener failed", exc_info=True)


class _Cleaner(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...


@dataclass(frozen=True)
class WorkerOutcome:
    """How :func:`run_worker` ended."""

    clean: bool  # every task ended within the stop timeout
    stopped: bool  # ended by ``stop`` (a signal, Ctrl-C, a lost device), not an empty queue
    lost: list[str]  # devices another holder took while this process stalled


def run_worker(
    tasks: TaskService,
    *,
    threads: int,
    kind: str,
    stop: threading.Event,
    drain: bool = False,
    pools: tuple[str, ...] = ("default",),
    devices: dict[str, str] | None = None,
    cleaner: _Cleaner | None = None,
    stop_timeout: float = 30.0,
    on_started: Callable[[WorkerGroup], object] | None = None,
    on_stopping: Callable[[], object] | None = None,
) -> WorkerOutcome:
    """Run this process as a worker until ``stop`` is set (or, with ``drain``, until the queue
    is empty): ``run-tasks`` (drain) and ``loop`` (with the cleaner).

    ``devices`` ({name: url}) are held first (a busy one raises DeviceBusyError); if another
    holder takes one of them (this process stalled past its lease), ``stop`` is set.
    ``on_started(group)`` is called once everything runs, ``on_stopping()`` when ``stop`` is
    set (not when a drained queue ends it). Ctrl-C stops it like ``stop``.
    """
    group = WorkerGroup(tasks, threads, drain=drain, kind=kind, pools=pools)
    holder = None
    try:
        if devices:
            holder = tasks.devices.hold(devices, group.worker_id)
            holder.on_lost = lambda names: stop.set()
            group.add_pools(holder.pools)
            if drain:  # no admitted task left without a runner: close, drain, then release
                group.close_admission = holder.close_admission
        group.start()
        if cleaner is not None:
            cleaner.start()
        if on_started is not None:
            on_started(group)
        try:
            if drain:
                while not group.wait(0.2) and not stop.is_set():
                    pass
            else:
                stop.wait()
        except KeyboardInterrupt:
            log.info("worker %s: interrupted, stopping", group.worker_id)
            stop.set()
        if stop.is_set() and on_stopping is not None:
            on_stopping()
    finally:
        lost = sorted(holder.lost) if holder is not None else []
        if holder is not None and not holder.admission_closed:
            try:  # stopping: no new task is admitted for devices about to be released
                holder.close_admission()
            except Exception:  # noqa: BLE001 - Redis down: the lease lapses by itself
                log.warning("worker %s: cannot close admission", group.worker_id, exc_info=True)
        try:
            clean = group.stop(stop_timeout)
        finally:
            if holder is not None:  # only the devices held here (not the web process's own)
                tasks.devices.release()
            if cleaner is not None:
                cleaner.stop()
    return WorkerOutcome(clean=clean, stopped=stop.is_set(), lost=lost)
