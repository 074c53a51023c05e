"""The study's two programs and what they share.

Wings: :mod:`experiments.run` (one training run: ``python -m experiments.run``), :mod:`experiments.sweep`
(a grid of runs, gates between them: ``python -m experiments.sweep``) and :mod:`experiments.eval`
(text encoding, decoding, evaluation). Shared at the top: the run-config schema (:mod:`.config`), the
gates and their schema (:mod:`.gates`, :mod:`.gates_config`), run identity (:mod:`.identity`) and the
run-directory contract (:mod:`.rundir`). Map and file formats: docs/architecture.md.
"""
