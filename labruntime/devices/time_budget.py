"""The student's time budget: refuse an operation that cannot finish in the time left.

The seed's ``program_device`` example, with an estimate instead of a guess::

    from labruntime import current_devices, require_time

    @weblab.task(device="board")
    def program_device(hex_text):
        board = current_devices["board"]
        require_time(board.estimate_seconds(hex_text), margin=2.0)  # NotEnoughTimeError
        return board.program(hex_text).to_dict()
"""

from __future__ import annotations

import math

from labruntime.errors import NotEnoughTimeError
from labruntime.globals import current_user

__all__ = ["require_time"]


def require_time(seconds: float, *, margin: float = 1.0, what: str = "this operation") -> float:
    """Raise NotEnoughTimeError unless ``seconds + margin`` fit in ``weblab_user.time_left``.

    Works in views and in tasks (where ``weblab_user`` is the task's session user). Returns
    the time left. An anonymous user (no session) has no limit.
    """
    if seconds < 0 or margin < 0 or math.isnan(seconds) or math.isnan(margin):
        raise ValueError(f"require_time({seconds!r}, margin={margin!r}): give seconds >= 0")
    user = current_user()
    if user.is_anonymous:
        return math.inf
    left = float(user.time_left)
    if seconds + margin > left:
        raise NotEnoughTimeError(
            f"{what} needs about {seconds:.1f} s (+{margin:g} s margin) but the session has "
            f"{max(left, 0):.1f} s left: it was not started"
        )
    return left
