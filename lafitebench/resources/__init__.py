"""Data that ships inside the wheel: the zoo manifests (``zoo``) and the paper's tables (``reports``).

In a checkout they live at the repository's top-level ``zoo/`` and ``reports/``; the build maps
those folders here (``pyproject.toml``, ``[tool.setuptools.package-dir]``), so an installed
wheel has them too. :func:`lafitebench.settings.data_dir` finds them either way.
"""
