"""Helpers under the names a Celery project imports them by (`celery.utils.log`)."""
