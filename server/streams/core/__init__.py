"""The pure core: events, the fold, the state it builds, the rules and the widget projections.

No I/O and no clock: time and ids come in with the events (tests/unit/test_purity.py checks every module here).
`reducer.fold` is the entry: one head for every source message, then the fold of each domain's events in the
module that owns its records (`jobs`, `runners`, `channels`, `series`, `shell`); `state.State` holds them all;
`aspects` names what a fold changed; `widgets` project the state for the pages.
"""
