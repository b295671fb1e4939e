"""Job functions for tests/py/rq_check.py. RQ stores a job as the dotted name of its
function, so they live in a module the worker can import (tests/py on its PYTHONPATH), as
RQ's quick start keeps `count_words_at_url` in `my_module`."""


def count_words(text):
    """The quick start's job, on a string instead of a URL (no network in tests)."""
    return len(text.split())


def add(a, b):
    return a + b


def fail(message):
    """A job that raises: RQ must mark it failed and keep the exception text."""
    raise ValueError(message)
