"""The pure core: events, the fold, the state it builds, the rules and the widget projections.

No I/O and no clock: time and ids come in with the events (tests/unit/test_purity.py checks every module here).
"""
