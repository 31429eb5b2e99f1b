"""The task step of a session's dispose: stop the session's tasks and wait a little for them.

The session layer calls it (through the lab's state) before ``on_dispose``, again and again
while it answers "ask again": the RLMS is told to come back rather than kept waiting. Past
WEBLAB_DISPOSE_TIMEOUT (from the first call) the remaining tasks are marked failed
(``dispose-timeout``) and the dispose goes on.
"""

from __future__ import annotations

import logging
import time

from labruntime.redact import session_hash
from labruntime.store.records import error_info
from labruntime.store.tasks import TaskStore

log = logging.getLogger(__name__)

__all__ = ["DISPOSE_ASK_AGAIN", "DISPOSE_WAIT", "dispose_steps"]

DISPOSE_WAIT = 1.5  # seconds one dispose step may block waiting for tasks to finish
DISPOSE_ASK_AGAIN = 1.0  # seconds the RLMS is told to wait before asking again


def dispose_steps(task_store: TaskStore, session_id: str, dispose_timeout: float) -> float | None:
    """Stop the session's unfinished tasks and wait a little for them.

    None: nothing left running (go on with on_dispose). A positive number: ask again in
    that many seconds.
    """
    if not task_store.unfinished_ids(session_id):
        task_store.clear_dispose(session_id)
        return None
    started = task_store.dispose_started(session_id)
    for task_id in task_store.unfinished_ids(session_id):  # not started: never runs
        task_store.stop(task_id, cancel_unstarted=True)
    task_store.reap_dead()
    limit = time.monotonic() + DISPOSE_WAIT
    while task_store.unfinished_ids(session_id):
        left = limit - time.monotonic()
        if left <= 0:
            break
        task_store.wait_session_event(session_id, left)
    else:
        task_store.clear_dispose(session_id)
        return None
    if time.time() - started >= dispose_timeout:
        error = error_info(
            "dispose-timeout",
            "DisposeTimeout",
            f"still running {dispose_timeout:g} s after the session ended "
            "(WEBLAB_DISPOSE_TIMEOUT); make the task check current_task_stopping",
        )
        failed = task_store.fail_unfinished(session_id, error)
        log.warning(
            "session %s: %d task(s) failed with dispose-timeout", session_hash(session_id), failed
        )
        task_store.clear_dispose(session_id)
        return None
    return DISPOSE_ASK_AGAIN
