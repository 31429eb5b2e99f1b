"""The pytest plugin of the hardware-in-the-loop suites (entry point ``labruntime_hil``).

- :mod:`.hil`: options, device maps and fixtures (simulated devices by default, real ones with
  ``--lr-device``); it loads nothing heavy until a test asks for a fixture;
- :mod:`.hil_lab`: the running lab of the ``hil_lab`` fixture (HTTP, Redis, a device worker).
"""
