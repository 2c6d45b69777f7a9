"""The bounds and names every layer shares, from config."""
from __future__ import annotations

import pytest


def test_limits_give_the_visitor_a_reason():
    from cvdemo.config import PUBLIC_LIMITS

    assert PUBLIC_LIMITS.epochs("10") == 10 and PUBLIC_LIMITS.k(4.0) == 4
    for bad, message in ((0, "between 1 and 50"), (51, "between 1 and 50"), ("ten", "whole number"), (None, "whole")):
        with pytest.raises(ValueError, match=message):
            PUBLIC_LIMITS.epochs(bad)
    with pytest.raises(ValueError, match="k must be between 1 and 50"):
        PUBLIC_LIMITS.k(51)


def test_class_display_name_is_one_rule():
    from cvdemo.config import class_display_name

    assert class_display_name("2_digits") == "2" and class_display_name("cat") == "cat"
    assert class_display_name("_digits") == "_digits" and class_display_name(None) is None
