"""aiswitch: a local-first coordinator for AI coding CLIs.

Nothing heavy is imported here: `aiswitch --version` and an adapter's handshake must
stay fast, so every subpackage is imported where it is used.
"""

__version__ = "0.1.0"
