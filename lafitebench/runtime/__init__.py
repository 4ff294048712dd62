"""Where and how work runs: device choice (:mod:`.device`), ``torch.distributed`` set-up and
reductions (:mod:`.distributed`, a no-op on one process), per-sample random generators
(:mod:`.rng`) and progress bars (:mod:`.progress`)."""
