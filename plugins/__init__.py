"""Built-in plugins: one file per plugin, each with its config model inside."""
