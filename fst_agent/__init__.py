"""fst-agent: Fast-Slow Training for tool-using code agents."""

__version__ = "0.1.0"
