"""The Celery app of tests/py/celery_check.py, shaped as Celery's "First steps" `tasks.py`
(with the Redis broker and result backend of its "Keeping Results" section). The broker
and backend URL comes from SLOTGATE_CELERY_URL, so that the worker started with
`celery -A celery_tasks worker` and the checking process agree on it."""

import os

from celery import Celery

URL = os.environ.get("SLOTGATE_CELERY_URL", "redis://127.0.0.1:6379/0")

app = Celery("celery_tasks", broker=URL, backend=URL)
# Celery 5.x warns at start that 6.0 changes this default; keep the current behaviour quietly.
app.conf.broker_connection_retry_on_startup = True
# Kombu's and Celery's documented `global_keyprefix` transport option, when
# SLOTGATE_CELERY_KEYPREFIX sets one: a hash tag such as "{celery}" puts every broker key
# (and every result key) in one cluster slot, the alternative to a colocation rule.
PREFIX = os.environ.get("SLOTGATE_CELERY_KEYPREFIX")
if PREFIX:
    app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
    app.conf.result_backend_transport_options = {"global_keyprefix": PREFIX}


@app.task
def add(x, y):
    return x + y


@app.task
def xsum(numbers):
    """A chord's callback (Celery's canvas guide): the sum of its header's results."""
    return sum(numbers)


@app.task
def fail(message):
    """A task that raises: its result must come back as a failure, the worker must go on."""
    raise ValueError(message)
