"""What the tests share: tiny models, one way to run vltool, data files, real hub layouts.

pyproject's ``pythonpath = ["tests"]`` makes this importable as ``support``; no test module imports
another test module.
"""
