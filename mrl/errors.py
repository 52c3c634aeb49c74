"""Deprecated name of :mod:`mrl.error_analysis`, kept while ``mrl.sweep`` imports ``log10_metrics`` from here."""
from mrl.error_analysis import *  # noqa: F401,F403
from mrl.error_analysis import log10_metrics  # noqa: F401
