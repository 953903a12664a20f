"""The sans-IO core of the app-server protocol.

Takes decoded messages (or bytes) and returns events, state and messages to send. It never
imports trio and never awaits, so every rule here is tested without I/O.
"""
