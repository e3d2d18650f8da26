"""Webhook authentication (the receiver's public face is qes_async.webhooks)."""
