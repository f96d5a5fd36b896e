"""jobpulse: a live operations console for async job systems that run on Redis."""

__version__ = "0.1.0"
