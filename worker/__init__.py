"""The worker side of tensorq: Celery tasks, the tensor ops, the training loop, GPU pinning, the launcher."""
