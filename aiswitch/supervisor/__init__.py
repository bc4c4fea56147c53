"""Agent process lifetimes: spawn, handshake, stop (and, later, restart policies)."""
