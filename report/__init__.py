"""Reporting beyond Slack (DESIGN §10): the outbox's sinks that tell developers where they look, e.g. GitHub."""
