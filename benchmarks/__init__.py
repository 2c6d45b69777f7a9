"""Tools that drive cvdemo from outside: the benchmark (``bench``), its HTTP probe and the loopback load test.

They import the package; the package never imports them.
"""
