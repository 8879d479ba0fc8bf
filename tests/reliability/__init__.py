"""The reliability suite: one home shared by real processes, real files, injected faults.

Each test reproduces a way the home once broke (lost runs, exceeded limits, hangs, unsafe files) and
asserts that it now holds. They are slower than unit tests and marked ``slow`` where they take seconds.
"""
