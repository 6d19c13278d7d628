"""therapygym: evaluate and align therapy chatbots on CBT fidelity and clinical safety.

A research and evaluation tool, not a clinical device.
"""

__version__ = "0.1.0"
