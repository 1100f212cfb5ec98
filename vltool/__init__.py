"""vltool: give an LLM eyes cheaply (VPGTrans) and instruction-tune it with routed adapters (LaVIN MMA).

Importing the package is cheap on purpose: ``vltool --help`` must not import torch, so nothing
heavy is imported here.
"""

__version__ = "0.1.0"
