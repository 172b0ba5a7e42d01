"""smsgw: an SMS gateway daemon over SMPP 3.4, built on Trio."""

__version__ = "0.1.0"
