"""Example tensorq job functions (entry points in the group `tensorq.jobs`, see pyproject.toml):

- `regress`: a small MLP fitting a synthetic relation drawn from the job's seed (Adam, mini-batches).
- `digits`: an MLP classifying scikit-learn's 8x8 digits, with a held-out split and accuracy.

Each resumes from its own checkpoint (model, optimizer and, through tensorq, torch's RNG state), so a job
killed mid-run ends with the same history as one that never was.
"""
