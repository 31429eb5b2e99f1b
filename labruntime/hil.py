"""pytest plugin for hardware-in-the-loop suites (options and device fixtures come with hil_tests)."""
