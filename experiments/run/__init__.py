"""One training run (``python -m experiments.run``): entry point (:mod:`.main`), the run directory's
life (:mod:`.session`), the training loop (:mod:`.trainer`), FSDP2 under torchrun (:mod:`.dist`),
checkpoints, memory measurement, models, optimizer arms and the W&B mirror."""
