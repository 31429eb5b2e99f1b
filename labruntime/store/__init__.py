"""All Redis access of labruntime: the only package that imports ``redis``.

Modules: :mod:`.connection` (the one connection of a lab: client, key prefix, Lua scripts and
error mapping, shared by every store: a ``redis`` connection error becomes a
:class:`~labruntime.errors.StoreUnavailableError`), :mod:`.embedded` (the private Redis server
used when WEBLAB_REDIS_URL is unset), :mod:`.blocking` (blocking commands whose timeout ends on
time at the server's ``hz 1``), one store per record kind: :mod:`.sessions`,
:mod:`.tasks` (+ its Lua in :mod:`.tasks_lua`), :mod:`.devices` and :mod:`.monitor` (the serial
monitor's lines), and :mod:`.records` (what they return). Stores return records, never raw
hashes; JSON everywhere, never pickle.

Key layout of the whole system (``B`` is WEBLAB_REDIS_BASE, so several labs share one Redis
without meeting; ``P`` is ``B:``)::

  sessions (sessions.py)
    B:weblab:session:<id>   hash, one per session (fields: see SessionRecord.to_hash).
                            status is "active", "disposing" or "expired". Its TTL covers the
                            slot plus WEBLAB_EXPIRED_USERS_TIMEOUT plus a margin while it is
                            live, then exactly WEBLAB_EXPIRED_USERS_TIMEOUT once expired: Redis
                            itself forgets expired users.
    B:weblab:live           sorted set: session id -> the time the cleaner must look at it
                            (min(slot end, last poll + WEBLAB_TIMEOUT), "now" after a logout,
                            the retry time while a dispose waits for work to end).
    B:weblab:fake           string: the id of the last session made by `fake new`.
  tasks, workers, locks (tasks.py; the full list is in its docstring)
    P task:<id>, P task:<id>:done, P tasks:queue:<pool>, P tasks:session:<sid>,
    P tasks:unfinished:<sid>, P tasks:finished:<sid>, P tasks:dispose:<sid>,
    P tasks:lock:..., P workers, P worker:<wid>[:running|:processing], channel P worker:<wid>:stop
  devices (devices.py; the full list is in its docstring)
    P device:<name>         the device's lease (PX): JSON {worker, token, host, pid, url}
    P device:<name>:token   fencing token, INCR on every new holder
    P device:<name>:req     list of control requests to the holder ("safe"...)
    P device:<name>:ack:<r> list holding the holder's reply to request <r>
    P devices:used:<sid>, P devices:revoked:<sid>, P device:<name>:safe
  serial monitor (monitor.py)
    P monitor:<device>      capped stream of what the device printed, each entry tagged with
                            a hash of the session that owned the device, or its "end"
"""
