"""mim: a major incident connector for ServiceNow and Jira Service Management.

The package is layered; each layer imports only the layers below it (checked by ``tests/test_layers.py``)::

    tools      backtest, history, rule tests, explain, report, demo, checks  (what admins run)
    job        the sync cycle, the state store, the run loop, webhooks, logs, doctor  (the only I/O ordering)
    process    the pure major incident process: stages, ownership, rota, calendar, messages, metrics
    platforms  transport and syntax of ServiceNow and Jira (query building, paging, auth, retries, writes)
    detection  rules, the pure engine, markers, identification, the major incident registry
    core       canonical ticket, actions, durations, located YAML, mappings, settings

``process`` and ``platforms`` sit side by side and do not import each other. ``sim`` (the HTTP
simulators) imports nothing else of the package.
"""
