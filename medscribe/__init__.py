"""medscribe: raw clinical text -> fine-tuned, retrieval-augmented assistant -> honest measurement.

Kept import-light on purpose: `medscribe --help` imports this package, so nothing heavy lives here.
"""

__version__ = "0.1.0"
