"""Signed webhooks (Standard Webhooks) delivered from a transactional outbox."""
