"""Session logic: start, status, poll, logout, dispose and one cleaner pass. No Flask here.

:class:`SessionManager` takes a :class:`~labruntime.store.sessions.SessionStore`, the config
and a clock; the lab's ``on_dispose`` and the task layer's dispose steps are passed in as plain
callables by the lab's state (:mod:`labruntime.state`). The start request itself is read by
:mod:`.start_request`; the thread running the passes is :mod:`.cleaner`.

Dispose, whatever started it (RLMS, logout, poll timeout, slot over, cleaner)::

    begin_dispose (active -> disposing, atomic)  ->  steps(session_id): busy? retry later
    -> claim (HSETNX, exactly one winner across processes) -> on_dispose -> expired user

A cleaner pass runs these steps for a batch of sessions at once (CLEAN_BATCH): each step is
one round trip for the whole batch; only ``on_dispose`` runs session by session.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labruntime.config import WebLabConfig
from labruntime.errors import StoreUnavailableError
from labruntime.redact import session_hash
from labruntime.store.records import SessionRecord, SessionState
from labruntime.store.sessions import SessionStore

from .lifecycle import LifecycleLog, SessionFacts, expiry_reason
from .start_request import StartRequest, slot_times

__all__ = ["SessionManager", "DisposeOutcome", "create_token"]

log = logging.getLogger(__name__)
STALE_CLAIM_MARGIN = 60.0  # a claim older than dispose timeout + this is from a dead process
BUSY_RETRY = 1.0  # seconds the RLMS waits when another process is running on_dispose
CLEAN_BATCH = 1000  # sessions a cleaner pass handles per batch (each step: one round trip)
CLEAN_PASS_BUDGET = 5.0  # seconds after which a cleaner pass starts no new batch


def create_token(size: int | None = None) -> str:
    """A random URL-safe token (session ids, secrets) of ``size`` random bytes (default 32)."""
    if size is None:
        size = 32
    return base64.urlsafe_b64encode(os.urandom(size)).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class DisposeOutcome:
    """found False: no such session (never was, or forgotten). retry_in: still busy, ask
    again then. A session already disposed is found and done: dispose is idempotent."""

    found: bool
    retry_in: float | None = None

    @property
    def done(self) -> bool:
        return self.found and self.retry_in is None


class SessionManager:
    """Start / status / poll / dispose of sessions, on a SessionStore, with an injectable clock."""

    def __init__(
        self,
        store: SessionStore,
        config: WebLabConfig,
        clock: Callable[[], float] = time.time,
        lifecycle: LifecycleLog | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        #: weblablib's JSON lifecycle events (on the app's logger: see :mod:`.lifecycle`)
        self.lifecycle = lifecycle or LifecycleLog(log)
        self._next_due_seen: tuple[float | None] | None = None  # an idle pass's next_due

    def _event(self, event: str, session_id: str, message: str, **fields: Any) -> None:
        """labruntime's own record of a session's life (the session named by its hash)."""
        if self.config.log_session_lifecycle:
            sid = session_hash(session_id)
            extra = {"event": event, "session": sid, **fields}
            log.info("%s session %s %s", event, sid, message, extra={"weblab": extra})

    # -- weblablib's lifecycle events -------------------------------------------------------
    def _lifecycle(self, action: str, facts: SessionFacts | None, **fields: Any) -> None:
        if self.config.log_session_lifecycle:
            self.lifecycle.emit(action, facts, timeout=self.config.timeout, **fields)

    def rejected(
        self, user: SessionFacts | None, status: int, cookie_session_id: str | None
    ) -> None:
        """``@requires_active`` refused a request: ``user`` None for an anonymous one."""
        if not self.config.log_session_lifecycle:
            return
        now = self.clock()
        if user is None:
            reason = (
                "anonymous_session_not_found"
                if cookie_session_id
                else "anonymous_no_session_cookie"
            )
            self._lifecycle(
                "protected_request_rejected", None, reason=reason, now=now, status=status,
                session_id=cookie_session_id,
            )  # fmt: skip
        else:
            reason = expiry_reason(user, self.config.timeout, now)
            self._lifecycle(
                "protected_request_rejected", user, reason=reason, now=now, status=status
            )

    def _expiry_detected(
        self, found: list[tuple[str, SessionState | None]], now: float, source: str
    ) -> None:
        """Sessions still active found over: one expiry_detected event each, the first time
        (one round trip marks them all, one more per event)."""
        if not self.config.log_session_lifecycle:
            return
        active = [sid for sid, state in found if state is not None and state.status == "active"]
        for sid in self.store.mark_once(active, "expiry_detected") if active else []:
            record = self.store.load_session(sid)
            if record is not None:
                reason = expiry_reason(record, self.config.timeout, now)
                self._lifecycle("expiry_detected", record, reason=reason, now=now, source=source)

    # -- start ------------------------------------------------------------------------------
    def create(self, request: StartRequest, session_id: str | None = None) -> SessionRecord:
        """Store a new active session from a start request."""
        now = self.clock()
        start, length = slot_times(request.server_data, now)
        record = SessionRecord(
            session_id=session_id or create_token(),
            **request.student_fields(),
            client_data=request.client_data,
            server_data=request.server_data,
            start_date=start,
            max_date=start + length,
            last_poll=now,
        )
        ttl = max(60.0, record.max_date - now + self.config.expired_users_timeout + 3600)
        self.store.create_session(record, check_at=self._check_at(record, now), ttl=ttl)
        self._event("start", record.session_id, f"for {length:g} s", length=length)
        return record

    def _check_at(self, record: SessionRecord | SessionState, last_poll: float) -> float:
        if self.config.timeout > 0:
            return min(record.max_date, last_poll + self.config.timeout)
        return record.max_date

    # -- status -----------------------------------------------------------------------------
    def should_finish(self, state: SessionState | SessionRecord | None, now: float) -> int:
        """-1 finish now; N > 0 ask again in N seconds; 0 (WEBLAB_POLL_INTERVAL=0) do not ask."""
        if state is None or state.status == "expired" or state.exited:
            return -1
        if state.status == "disposing":
            return 1
        left = state.max_date - now
        timed_out = self.config.timeout > 0 and now - state.last_poll > self.config.timeout
        if left <= 0 or timed_out:
            return -1
        if self.config.poll_interval == 0:
            return 0  # WebLab-Deusto will not ask again (the lab ends the session itself)
        return max(1, math.ceil(min(self.config.poll_interval, left)))

    def is_active(self, record: SessionRecord, now: float) -> bool:
        """Active for the student: not disposing/ended, slot not over, still polling."""
        return record.status == "active" and self.should_finish(record, now) >= 0

    def status(self, session_id: str) -> int:
        """One session's should_finish (one round trip; one more, once, at its expiry)."""
        now = self.clock()
        state = self.store.session_states([session_id])[0]
        result = self.should_finish(state, now)
        if result < 0:
            self._expiry_detected([(session_id, state)], now, "status")
        return result

    def bulk_status(self, session_ids: list[str], timeout: float | None = None) -> dict[str, int]:
        """should_finish of many sessions, 500 per pipelined round trip, stops at ``timeout``."""
        started = time.monotonic()
        result: dict[str, int] = {}
        for first in range(0, len(session_ids), 500):
            if first and timeout is not None and time.monotonic() - started >= timeout:
                break
            chunk = session_ids[first : first + 500]
            now = self.clock()
            over = []
            for sid, state in zip(chunk, self.store.session_states(chunk), strict=True):
                result[sid] = self.should_finish(state, now)
                if result[sid] < 0:
                    over.append((sid, state))
            self._expiry_detected(over, now, "status")
        return result

    # -- student ----------------------------------------------------------------------------
    def load(self, session_id: str, *, poll: bool) -> SessionRecord | None:
        """The session as a student's request needs it (one round trip, recording a poll when
        ``poll``); its RLMS initial data is read on first use (``store.load_blobs``)."""
        poll_at = self.clock() if poll else None
        return self.store.load_student(session_id, poll_at=poll_at, timeout=self.config.timeout)

    def poll(self, session_id: str) -> bool:
        """The student is still there."""
        return self.store.poll(session_id, now=self.clock(), timeout=self.config.timeout)

    def logout(self, session_id: str) -> bool:
        """The student left: status answers -1 and the cleaner disposes it."""
        done = self.store.mark_exited(session_id, self.clock())
        if done:
            self._event("logout", session_id, "by the student")
        return done

    # -- dispose ----------------------------------------------------------------------------
    def dispose(
        self,
        session_id: str,
        reason: str,
        steps: Callable[[str], float | None],
        on_dispose: Callable[[SessionRecord], None],
    ) -> DisposeOutcome:
        """Run the dispose steps; on_dispose runs exactly once per session, in one process."""
        now = self.clock()
        begun = self.store.begin_dispose(session_id, now, reason)
        if begun == "missing":
            self.store.forget_live(session_id)
            return DisposeOutcome(found=False)
        if begun == "expired":  # disposed already (by anyone): "Deleted" again, as weblablib
            return DisposeOutcome(found=True)
        if begun == "started":
            self._event("dispose", session_id, f"started ({reason})", reason=reason)
        record = self.store.load_session(session_id)
        if record is None:
            return DisposeOutcome(found=False)
        if record.dispose_claim:
            return self._claimed_elsewhere(record, now)
        busy = _run_steps(steps, session_id)
        if busy is not None and busy > 0:
            self.store.reschedule(session_id, now + busy)
            self._event("dispose", session_id, f"waits {busy:g} s for work", busy=busy)
            return DisposeOutcome(found=True, retry_in=busy)
        if not self.store.claim_dispose(session_id, f"{create_token(8)} {now!r}"):
            return DisposeOutcome(found=True, retry_in=BUSY_RETRY)
        _run_on_dispose(on_dispose, record)
        self.store.finish_dispose(session_id, self.clock(), self.config.expired_users_timeout)
        self._event("dispose", session_id, "done", reason=record.reason or reason)
        self._disposed(record, record.reason or reason, now)
        return DisposeOutcome(found=True)

    def _disposed(self, record: SessionRecord, source: str, now: float) -> None:
        reason = expiry_reason(record, self.config.timeout, now)
        self._lifecycle("disposed", record, reason=reason, now=now, source=source, disposing=False)

    def _claimed_elsewhere(self, record: SessionRecord, now: float) -> DisposeOutcome:
        try:
            claimed_at = float((record.dispose_claim or "").split()[-1])
        except (ValueError, IndexError):
            claimed_at = now
        if now - claimed_at > self.config.dispose_timeout + STALE_CLAIM_MARGIN:
            log.warning(
                "session %s: the process running on_dispose died; marking it ended",
                session_hash(record.session_id),
            )
            self.store.finish_dispose(record.session_id, now, self.config.expired_users_timeout)
            self._disposed(record, record.reason or "dead process", now)
            return DisposeOutcome(found=True)
        self.store.reschedule(record.session_id, now + BUSY_RETRY)
        return DisposeOutcome(found=True, retry_in=BUSY_RETRY)

    def _reason(self, state: SessionState, now: float) -> str:
        if state.status == "disposing":
            return "retry"
        if state.exited:
            return "logout"
        if now >= state.max_date:
            return "slot over"
        return "timeout"

    def clean(
        self,
        steps: Callable[[str], float | None],
        on_dispose: Callable[[SessionRecord], None],
        steps_many: Callable[[list[str]], dict[str, float | None]] | None = None,
    ) -> int:
        """One cleaner pass: dispose every session whose time is over, in batches of
        CLEAN_BATCH (each step of a batch one round trip for the whole batch; ``steps_many``
        is the batch form of ``steps``), until none is due or CLEAN_PASS_BUDGET seconds have
        passed. Returns how many ended."""
        started = time.monotonic()
        ended = 0
        while True:
            now = self.clock()
            due, first = self.store.due_and_next(now, limit=CLEAN_BATCH)
            self._next_due_seen = None if due else (first,)
            if not due:
                break
            done = self._clean_batch(due, now, steps, steps_many, on_dispose)
            ended += done
            if len(due) < CLEAN_BATCH or not done:
                break
            if time.monotonic() - started >= CLEAN_PASS_BUDGET:
                break
        return ended

    def next_due(self) -> float | None:
        """When the cleaner must look again: as the last pass saw it when it found nothing
        to do (no round trip), else read now."""
        seen, self._next_due_seen = self._next_due_seen, None
        return seen[0] if seen is not None else self.store.next_due()

    def _clean_batch(
        self,
        due: list[str],
        now: float,
        steps: Callable[[str], float | None],
        steps_many: Callable[[list[str]], dict[str, float | None]] | None,
        on_dispose: Callable[[SessionRecord], None],
    ) -> int:
        """:meth:`dispose` of the sessions of ``due`` that are over, step by step for all of
        them at once (on_dispose still runs once per session, in one process)."""
        later: dict[str, float] = {}
        forget: list[str] = []
        over: list[tuple[str, str]] = []
        for sid, state in zip(due, self.store.session_states(due), strict=True):
            if state is None:
                forget.append(sid)
            elif state.status == "active" and self.should_finish(state, now) >= 0:
                later[sid] = self._check_at(state, state.last_poll)
            else:
                reason = self._reason(state, now)
                if reason == "timeout":
                    self._event("timeout", sid, "stopped polling", reason=reason)
                over.append((sid, reason))
        self.store.schedule(later, forget)
        later = {}
        ended = 0
        ready: list[SessionRecord] = []
        reasons = dict(over)
        mark = self.config.log_session_lifecycle
        begun_all = self.store.begin_dispose_many(over, now, mark_expiry=mark)
        for (sid, reason), (begun, record, first) in zip(over, begun_all, strict=True):
            if first and record is not None:
                why = expiry_reason(record, self.config.timeout, now)
                self._lifecycle("expiry_detected", record, reason=why, now=now, source="cleaner")
            if begun == "expired":
                ended += 1  # disposed already (by anyone)
            if begun == "started":
                self._event("dispose", sid, f"started ({reason})", reason=reason)
            if record is None or begun == "expired":
                continue
            if record.dispose_claim:
                self._claimed_elsewhere(record, now)
                continue
            ready.append(record)
        busy = self._batch_steps([r.session_id for r in ready], steps, steps_many)
        claims: dict[str, str] = {}
        for record in ready:
            sid = record.session_id
            wait = busy.get(sid)
            if wait is not None and wait > 0:
                later[sid] = now + wait
                self._event("dispose", sid, f"waits {wait:g} s for work", busy=wait)
            else:
                claims[sid] = f"{create_token(8)} {now!r}"
        won = self.store.claim_dispose_many(claims)
        later.update((sid, now + BUSY_RETRY) for sid in claims if sid not in won)
        self.store.schedule(later)
        finished: list[SessionRecord] = []
        try:
            for record in ready:
                if record.session_id not in won:
                    continue
                _run_on_dispose(on_dispose, record)
                finished.append(record)
        finally:
            ids = [record.session_id for record in finished]
            self.store.finish_dispose_many(ids, self.clock(), self.config.expired_users_timeout)
        for record in finished:
            reason = record.reason or reasons[record.session_id]
            self._event("dispose", record.session_id, "done", reason=reason)
            self._disposed(record, reason, now)
        return ended + len(finished)

    def _batch_steps(
        self,
        ids: list[str],
        steps: Callable[[str], float | None],
        steps_many: Callable[[list[str]], dict[str, float | None]] | None,
    ) -> dict[str, float | None]:
        """The dispose steps of a batch: {id: None (go on) or seconds to wait}. A failure
        ends the session anyway, as in :meth:`dispose`."""
        if not ids:
            return {}
        if steps_many is not None:
            try:
                return steps_many(ids)
            except StoreUnavailableError:
                raise
            except Exception:
                log.exception("the dispose steps of %d session(s) failed; one by one", len(ids))
        result: dict[str, float | None] = {}
        for sid in ids:
            result[sid] = _run_steps(steps, sid)
        return result


def _run_steps(steps: Callable[[str], float | None], session_id: str) -> float | None:
    """The dispose steps of one session: seconds to wait for its work, or None (none, or the
    steps failed: logged, the session ends anyway; a store that is down stops the dispose)."""
    try:
        return steps(session_id)
    except StoreUnavailableError:
        raise
    except Exception:
        log.exception(
            "session %s: the dispose steps failed; ending it anyway", session_hash(session_id)
        )
        return None


def _run_on_dispose(on_dispose: Callable[[SessionRecord], None], record: SessionRecord) -> None:
    """The lab's on_dispose for one session; what it raises is logged, the session ends anyway
    (but a store that is down stops the dispose)."""
    try:
        on_dispose(record)
    except StoreUnavailableError:
        raise
    except Exception:
        log.exception(
            "on_dispose of session %s raised; the session ends anyway",
            session_hash(record.session_id),
        )
