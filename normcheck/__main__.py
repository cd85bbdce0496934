"""``python -m normcheck``."""

from normcheck.cli import main

raise SystemExit(main())
