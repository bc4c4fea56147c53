"""The built-in agent adapters (installed as `aiswitch_adapters`)."""
