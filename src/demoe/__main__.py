"""`python -m demoe ...` (also what `torchrun -m demoe train ...` runs)."""

from demoe.cli import main

raise SystemExit(main())
