"""Small helpers every layer may use: structured concurrency, lazy and redacting logging."""
