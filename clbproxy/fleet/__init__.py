"""Fleet mode: many clbproxy instances that take their routing configuration from etcd.

etcd holds one TOML document per cluster; each instance merges it with its
local ``[fleet]`` file (:mod:`clbproxy.config.fleet`) and applies it through the
same reload as SIGHUP.  This package speaks to etcd's v3 JSON gateway and
nothing else:

- :mod:`~clbproxy.fleet.messages`: the gateway's JSON (base64 keys, int64 as
  strings, omitted defaults) in and out, sans-IO;
- :mod:`~clbproxy.fleet.stream`: the watch stream, bytes in, responses out, sans-IO;
- :mod:`~clbproxy.fleet.gateway`: calls and watches with treq (its own streaming
  protocol for the watch, so it can be cut);
- :mod:`~clbproxy.fleet.blocking`: the same calls without a reactor, for start-up
  and the ``clbproxy fleet`` commands;
- :mod:`~clbproxy.fleet.watch`: the watch loop (resync, resume, backoff, frozen
  members), with the reactor passed in;
- :mod:`~clbproxy.fleet.cache`: the last good document and cookie secrets on disk;
- :mod:`~clbproxy.fleet.presence`: the instance's own key under a lease.
"""
