"""The ``twistd clbproxy`` plugin: a name for :mod:`clbproxy.tap`, nothing else."""

from twisted.application.service import ServiceMaker

clbproxy = ServiceMaker(
    "clbproxy",
    "clbproxy.tap",
    "A layer-7 HTTP and WebSocket load balancer",
    "clbproxy",
)
