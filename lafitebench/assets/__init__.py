"""Assets: what lafitebench reads but does not make, and where it comes from.

- :mod:`.download`: the one download path (resume, size and sha256 checks, atomic placement).
- :mod:`.weights`: the weights resolver (a local file, ``$LAFITEBENCH_WEIGHTS``, the cache, or a download).
- :mod:`.backbones`: the CLIP backbones LAFITE was released with (open_clip names, feature width).
- :mod:`.zoo`: the model zoo's manifests (released models, their sources and paper rows).

Conversion of a released file into a native checkpoint is in :mod:`lafitebench.checkpoints.convert`.
"""
