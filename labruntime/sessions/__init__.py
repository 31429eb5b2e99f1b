"""Sessions: the RLMS protocol and the student, from the start request to the expired user.

- :mod:`.start_request`: reading the RLMS's start request (initial data, slot times);
- :mod:`.manager`: start, status, poll, logout, dispose and one cleaner pass (no Flask);
- :mod:`.cleaner`: the thread that runs the cleaner passes;
- :mod:`.users`: the student as the lab sees it (anonymous, current, expired);
- :mod:`.binding`: the user bound to this context outside requests (tasks, hooks);
- :mod:`.access`: the access decorators, ``poll()``, ``logout()`` and the forbidden page;
- :mod:`.views`: the RLMS routes and the student's callback, poll and logout routes;
- :mod:`.http_guard`: JSON bodies read safely, a body cap, JSON errors on RLMS routes.
- :mod:`.monitor_view`: the serial monitor's page side (``serial_monitor(app)``, SSE).
"""
