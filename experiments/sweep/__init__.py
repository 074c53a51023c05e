"""A grid of runs (``python -m experiments.sweep``): entry point and execution (:mod:`.main`), its
config schema (:mod:`.config`), planning and cost prediction (:mod:`.plan`), Hydra launchers
(:mod:`.launch`), the live table (:mod:`.progress`) and the dry run (:mod:`.dry_run`)."""
