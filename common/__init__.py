"""Small pieces every stage shares: logging, atomic files, provenance, content ids, config errors.

Nothing here imports torch, dolfinx or any stage package, so each stage (and `analysis` on a
laptop with no GPU stack) can use it. `flashoptim` does not import it: that library stands alone.
"""
