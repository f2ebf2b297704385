"""The vocabulary every layer shares: the canonical ticket, actions, durations, located YAML, mappings and
settings. Imports nothing else of the package."""
