"""Small utilities every layer may use: log-safe text, Autobahn's lazy debug logging."""
