"""gunicorn settings for one labruntime lab on a Raspberry Pi (behind nginx).

    SCRIPT_NAME=/lab1 gunicorn -c /etc/labruntime/gunicorn.conf.py wsgi_app:application

labruntime-web.service runs exactly that. A second lab on the same Pi uses the same file with
``LABRUNTIME_BIND=127.0.0.1:8081`` and ``SCRIPT_NAME=/lab2`` (see nginx/labs.conf).

The web workers only serve HTTP: the lab's configuration sets WEBLAB_TASK_THREADS_PROCESS = 0,
so no task runs here; the device worker (labruntime-worker.service) holds the hardware and
runs the tasks. Every worker process shares the lab's Redis, so any worker can answer any call.
"""

import os

# Only nginx talks to gunicorn: listen on the loopback interface.
bind = os.environ.get("LABRUNTIME_BIND", "127.0.0.1:8080")

# A Pi 4/5 has 4 cores; 2 processes x 4 threads serve a lab's RLMS calls, student pages and
# polls with room to spare, and leave CPU to the device worker.
workers = int(os.environ.get("LABRUNTIME_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("LABRUNTIME_WEB_THREADS", "4"))

# Dispose is bounded by WEBLAB_DISPOSE_TIMEOUT (60 s) but normally answers "ask again" at once;
# keep the request timeout above it so a slow dispose is never killed halfway.
timeout = 90
graceful_timeout = 30
keepalive = 5

# nginx on the same host sets X-Forwarded-Proto; trust it only from there, so wsgi.url_scheme
# is https for the public side (WEBLAB_SCHEME = "https" says the same to the student's link).
forwarded_allow_ips = "127.0.0.1,::1"

# Import the app in each worker after the fork: every worker opens its own Redis connection.
preload_app = False

# journald keeps the logs (systemd unit); "-" = stderr.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LABRUNTIME_LOG_LEVEL", "info")
proc_name = "labruntime-" + os.environ.get("SCRIPT_NAME", "/lab").strip("/").replace("/", "-")
