"""Peas in Slack: their lines and buttons, the words of their messages, `/pea` and its form."""
