"""clbproxy: a layer-7 HTTP and WebSocket load balancer on Twisted and Autobahn."""

__version__ = "0.1.0"
