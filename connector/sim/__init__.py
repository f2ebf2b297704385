"""Simulators of the platforms' HTTP APIs on 127.0.0.1, for tests, ``mim simulate`` and ``mim demo``.

``base`` holds what both share (the route table type and its dispatcher, the server, fault injection and the
request log); ``servicenow`` and ``jira`` are packages split by concern. This layer imports nothing else of
``connector``.
"""
