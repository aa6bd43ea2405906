"""`python -m vlzoo ...` (also what `torchrun -m vlzoo train cfg.yaml` runs)."""

from .cli import main

raise SystemExit(main())
