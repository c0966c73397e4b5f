"""Running the proxy: lifecycle (reload, drain, signals) and worker processes
(the supervisor and each worker).
"""
