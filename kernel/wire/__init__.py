"""The wire format: Celery's protocol 2, result metas, the exception codec, transport contracts."""
