"""Waiting for a status: the waiters, polling, the pure waiting logic, the dispatcher."""
