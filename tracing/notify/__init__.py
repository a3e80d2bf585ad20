"""Notifying agencies: the transactional outbox, webhook delivery, the event feed."""
