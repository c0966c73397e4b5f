"""HTTP/2 towards clients on HTTPS listeners (chosen by ALPN): the server connection on
``h2``, its streams presented to the listener as requests, and the guards against
the known HTTP/2 floods.  Backends stay HTTP/1.1.
"""
