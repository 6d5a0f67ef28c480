"""What both sides of tensorq need: settings, the Celery app, job specs, the tensor codec, the job store."""

__version__ = "0.1.0"
