"""lafitebench: LAFITE models and the paper's metrics, reproducible and measurable."""
__version__ = "0.1.0"
