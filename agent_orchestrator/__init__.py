"""agent-orchestrator: a NATS-native service that manages AI agents.

Layers, each importing only those to its left:
``contracts`` -> ``domain`` -> ``storage`` -> ``handlers`` -> ``service`` -> ``cli``.
"""

__version__ = "0.1.0"
