"""The native connector: sources that speak the jobpulse protocol (docs/protocol.md sections 1 and 2)."""
