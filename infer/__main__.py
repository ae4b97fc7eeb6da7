"""Entry point: ``python -m infer`` (see :mod:`infer.cli`)."""
import sys

from infer.cli import main

sys.exit(main())
