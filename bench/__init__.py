"""The load benchmark (`make bench`): see bench/driver.py and the README."""


class BenchError(RuntimeError):
    """The run cannot go on; the message says why."""
