"""The major incident process as pure planning: stages and their duties, ownership (humans win), team and
manager assignment, rota, business calendar, messages and metrics. Imports ``detection`` and ``core``."""
