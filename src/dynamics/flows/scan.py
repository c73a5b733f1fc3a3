"""``scan_log`` and ``log_steps`` for the flows (defined once in ``dynamics.scan``)."""

from dynamics.scan import log_steps, scan_log

__all__ = ["log_steps", "scan_log"]
