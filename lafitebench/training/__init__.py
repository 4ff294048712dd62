"""LAFITE training: configuration and presets, the loss terms, training data, the Lafite-NN
perturbation network's training, and the training loop (see :func:`lafitebench.jobs.train.run_train`)."""
