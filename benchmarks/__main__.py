"""``python -m benchmarks``: the benchmark command."""
import sys

from .bench import main

sys.exit(main())
