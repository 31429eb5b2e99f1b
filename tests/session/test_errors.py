"""The error tree: one root, each leaf also the closest built-in; proxies say how to fix."""

from __future__ import annotations

import builtins

import pytest
from flask import Flask

import labruntime
from labruntime import errors
from labruntime.state import get_state


@pytest.mark.parametrize(
    "name,builtin",
    [
        ("NoContextError", RuntimeError),
        ("WebLabNotInitializedError", RuntimeError),
        ("InvalidConfigError", ValueError),
        ("AlreadyRunningError", RuntimeError),
        ("NotFoundError", LookupError),
        ("TimeoutError", builtins.TimeoutError),
        ("InvalidStartRequestError", ValueError),
        ("StoreUnavailableError", ConnectionError),
        ("AlreadyInitializedError", RuntimeError),
    ],
)
def test_leaves_inherit_root_and_builtin(name, builtin):
    error = getattr(labruntime, name)
    assert error is getattr(errors, name)
    assert issubclass(error, labruntime.WebLabError) and issubclass(error, builtin)
    assert name in errors.__doc__


def test_public_api_is_exported():
    for name in labruntime.__all__:
        assert getattr(labruntime, name) is not None
    for name in ("WebLab", "weblab_user", "requires_active", "current_task", "TimeoutError"):
        assert name in labruntime.__all__


def test_not_initialized_is_a_clear_error():
    app = Flask("bare")
    with app.app_context(), pytest.raises(labruntime.WebLabNotInitializedError, match="init_app"):
        get_state()
