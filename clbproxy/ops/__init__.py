"""Running the proxy: the service tree (services), what a tap.conf must pass (preflight),
binding, reload, drain, signals, log reopening, systemd notification, and worker
processes (the supervisor and each worker).
"""
