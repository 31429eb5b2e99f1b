"""Devices meeting tasks: holding, routing, admission, ``current_devices``, progress, dispose.

The one way to reach a device inside a task::

    from labruntime import current_devices

    @weblab.task(device="board")
    def program_device(hex_text):
        board = current_devices["board"]          # the opened Device the task asked for
        require_time(board.estimate_seconds(hex_text), margin=2)
        return board.program(hex_text).to_dict()  # progress -> task.progress, automatically

- **Routing.** A task with ``devices=[...]`` goes to the queue (pool) ``devices:<a+b>`` (names
  sorted); the process holding those devices (``labruntime loop --device ...``, or the web
  process with runner threads) takes from the pool of every subset of its devices.
- **Admission** (``.delay()``): every device must have a live holder, the same one for all;
  else :class:`~labruntime.errors.DeviceUnavailableError` says which worker to start. A session
  being disposed may start no more device tasks, nor may anyone use a device whose last
  ``safe()`` failed (the lab is not ready until one succeeds).
- **Progress.** Every operation on the task's devices reports to ``task.progress``
  ({stage, done, total, fraction, updated}), written to Redis at most 10 times a second (the
  last event is always written).
- **Stop.** ``task.stop()`` cancels the operations on the task's devices at their next safe
  point (the worker's stop listener calls ``ops.cancel_all()``).

Modules: :mod:`.holder` (the process owning devices: leases, control requests, safe at close),
:mod:`.service` (a lab's devices in this process: holding, admission, dispose, status),
:mod:`.routing` (device pools and the worker command line), :mod:`.admission` (what may start
now), :mod:`.time_budget` (``require_time``), :mod:`.current` (``current_devices``),
:mod:`.progress` (task progress from device operations), :mod:`.option` (``--device``),
:mod:`.dispose` (devices at the end of a session) and :mod:`.monitor` (the serial monitor's
holder side: what monitored consoles print, for the session owning the device).
"""
