"""Checkpoint formats: official LAFITE snapshot pickles (read safely, never executed) and
lafitebench's native files. Import the submodules directly: ``lafitebench.checkpoints.official``."""
