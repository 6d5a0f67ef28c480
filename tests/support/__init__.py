"""Helpers the tests share: starting real processes, the CLI in-process or as a process, the training sizes
several tests compare against. Not test modules: nothing here is collected."""
