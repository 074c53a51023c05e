"""`python -m datagen [data=smoke|pilot|protocol] [key=value ...] [--cfg]`: create a dataset.

Skips a complete dataset (manifest.json present) and resumes finished shards. Bad configuration
prints one line and exits 2 before any solve or directory.
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

import datagen.spec  # registers the schemas before composing
from common.config import exit_on_config_error, load_validated
from common.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    print_cfg = "--cfg" in args
    overrides = [a for a in args if a != "--cfg" and a not in ("job", "all")]
    cfg = load_validated("datagen", overrides, datagen.spec.validate_datagen)
    if print_cfg:
        print(OmegaConf.to_yaml(cfg))
        return 0
    setup_logging(level=cfg.log_level)
    from datagen.generate import generate

    with exit_on_config_error():  # DatasetError too: one line naming the file, exit 2
        out = generate(cfg)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
