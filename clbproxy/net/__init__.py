"""Sockets, endpoints, TLS contexts and the reactor's event dispatch.

The modules that know Twisted's transport internals live here, below every
protocol module that uses them.
"""
