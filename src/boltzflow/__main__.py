"""``python -m boltzflow ...``: the command line, also under ``torchrun --nproc-per-node N -m boltzflow run ...``."""

import sys

from boltzflow.cli import main

if __name__ == "__main__":
    sys.exit(main())
