"""The scheduled job: the sync cycle (the only place that orders I/O), the state store, the run loop, webhook
delivery, logs and doctor."""
