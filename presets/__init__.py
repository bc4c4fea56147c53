"""Built-in presets and provider templates, shipped inside the installed package."""
