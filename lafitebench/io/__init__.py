"""Input/output that every layer shares: atomic writes and hashing (:mod:`.files`), JSON
conversion (:mod:`.jsonable`), the restricted unpickler (:mod:`.unpickle`), strict state-dict
loading (:mod:`.state_dict`) and verified downloads (:mod:`.download`).

Nothing here imports from the rest of lafitebench except :mod:`lafitebench.errors`,
:mod:`lafitebench.settings` and :mod:`lafitebench.runtime.progress`.
"""
