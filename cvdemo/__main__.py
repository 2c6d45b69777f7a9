"""Entry point for ``python -m cvdemo``."""
import sys

from .cli import main

sys.exit(main())
