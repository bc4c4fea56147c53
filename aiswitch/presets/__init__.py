"""Presets: named sets of environment variables for a shell or an agent child."""
