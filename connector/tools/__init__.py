"""What admins run around the job: backtests over history, rule tests, explain, the report, the demo and
configuration checks."""
