"""WebSocket: frames and close codes (sans-IO), the handshake reader, session
timers, flow control, the validating fast path, and the relay session.
"""
