"""Detection: rule files, the pure streaming engine, markers, identification actions and the major incident
registry. Imports only ``core``."""
