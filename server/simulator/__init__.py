"""The fleet simulator behind `jobpulse simulate`: a small, real job system on Redis that speaks the protocol.

Jobs live in Redis (queues, in-flight and scheduled sets, job hashes); runners
claim and run them, a producer publishes them, a broker schedules them and
reports depth, and commands on `P:control` act on all of it. See
docs/protocol.md sections 1 and 2 for the wire contract.
"""

from server.simulator.config import FleetConfig, add_arguments, config_from_args
from server.simulator.fleet import Fleet

__all__ = ["Fleet", "FleetConfig", "add_arguments", "config_from_args"]
