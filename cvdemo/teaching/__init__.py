"""Teaching the models from a visitor's own examples: the examples kept per session
(:mod:`.examples`) and the models taught them from their current weights (:mod:`.recipe`)."""
from __future__ import annotations

from .examples import SEEN, Example, ExampleError, ExamplesFull, ExampleStore, class_name, example_files
from .recipe import Taught, check_examples, teach, warm, widen

__all__ = ["SEEN", "Example", "ExampleError", "ExampleStore", "ExamplesFull", "Taught", "check_examples", "class_name",
           "example_files", "teach", "warm", "widen"]
