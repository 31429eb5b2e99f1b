"""Tasks: long lab operations run off the request path, in runner threads or worker processes.

- :mod:`.decorator`: what ``@weblab.task()`` returns (call, ``.delay()``, ``.run_sync()``) and
  the registry of a lab's tasks;
- :mod:`.handle`: the task handle (:class:`~.handle.WebLabTask`) and the running task;
- :mod:`.service`: the task layer of one lab (queries, the user and devices a task runs with);
- :mod:`.runner`: running one claimed task and storing how it ended;
- :mod:`.worker`: runner threads with a heartbeat lease, and the one worker loop of
  ``run-tasks`` / ``loop``;
- :mod:`.dispose`: the task step of a session's dispose.
"""
