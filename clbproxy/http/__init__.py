"""HTTP/1.1: the client-side channel, responses, trailers, X-Forwarded headers,
redirects, and the forwarder that sends a request to a backend and streams the answer
(with its backend client, header rewriting and response relay beside it).
"""
