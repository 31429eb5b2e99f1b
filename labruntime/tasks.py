"""Tasks: long lab operations run off the request path (skeleton; filled in next)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class TasksMixin:
    """Task API mixed into ``WebLab``."""

    def task(self, unique: str | None = None) -> Callable[[Callable[..., Any]], Any]:
        raise NotImplementedError

    def get_task(self, identifier: Any) -> Any:
        return None

    @property
    def tasks(self) -> list[Any]:
        return []

    @property
    def running_tasks(self) -> list[Any]:
        return []

    def get_tasks(self, func_or_name: Any) -> list[Any]:
        return []

    def get_running_tasks(self, func_or_name: Any) -> list[Any]:
        return []

    def get_running_task(self, func_or_name: Any) -> Any:
        return None

    def join_tasks(
        self, func_or_name: Any, timeout: float | None = None, stop: bool = False
    ) -> None:
        return None

    def _start_task_workers(self, app: Any) -> None:
        return None

    def _dispose_steps(self, session_id: str) -> float | None:
        return None
