"""Bench only: the status page's series off, to measure what they cost (issue 24).

Put this directory first on ``PYTHONPATH`` of one bench row (``bench/ab_cpu.py
off=bench/series_off:CHECKOUT``, or a ``--also-python`` wrapper for
``bench/run.py``): Python imports ``sitecustomize`` at start-up, and this one
makes the access events' counting observer
(:class:`~clbproxy.observability.service.AccessCounters`) feed the Prometheus
metrics only, so the :class:`~clbproxy.observability.series.SeriesStore`
counts nothing (its 5-second sampler still runs, reading the live sessions).
With ``request_id_header = ""`` on the row's listener (``--row-extra``) that
row is the proxy with request IDs and series off.  Nothing in the package
reads this directory; a row without it on its path is the proxy as shipped.
"""

from __future__ import annotations

from clbproxy.observability.service import AccessCounters


def _metrics_only(self, event: dict) -> None:
    self.metrics(event)


AccessCounters.__call__ = _metrics_only
