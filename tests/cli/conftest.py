"""Fixtures of the CLI tests: the device lab of tests/integration (in this process and as
worker subprocesses), shared rather than written again."""

from tests.integration.conftest import (  # noqa: F401 - fixtures, found by name
    devlab_factory,
    hex_small,
    lock_dir,
    worker_factory,
)
