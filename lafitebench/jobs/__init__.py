"""Jobs: what each CLI command calls (``eval`` now; ``generate``, ``train``, ``report`` next).

Each job is an importable function that builds its inputs, runs the work and saves results.
"""
