"""Bench only: the status page's series off, to measure what they cost (issue 24).

Python imports ``sitecustomize`` at start-up from the first directory on its
path that has one; with this directory first on a bench row's ``PYTHONPATH``,
the access events are counted for the Prometheus metrics only
(:mod:`metrics_only`), so the :class:`~clbproxy.observability.series.SeriesStore`
counts nothing (its 5-second sampler still runs, reading the live sessions).
With ``request_id_header = ""`` on the row's listener, that row is the proxy
with request IDs and series off.  Nothing in the package reads this
directory; a row without it on its path is the proxy as shipped.

Request IDs and series off (``off``) against on, the same checkout ``WT``::

    bench/ab_cpu.py on=WT on2=WT off=WT/bench/series_off:WT \
        --row-listener-extra 'off=request_id_header = ""' --mode http

    # a wrapper for bench/run.py --also-python, e.g. /tmp/py-off:
    #   PYTHONPATH=WT/bench/series_off:WT exec WT/.venv/bin/python "$@"
    bench/run.py --python WRAPPER_ON --also-python on2=WRAPPER_ON \
        --also-python off=/tmp/py-off --row-listener-extra 'off=request_id_header = ""' ...
"""

from __future__ import annotations

import metrics_only  # this directory's (it is on the path, first)

metrics_only.patch()
