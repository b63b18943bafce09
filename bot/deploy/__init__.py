"""The train in Slack: its cards and buttons, the words of its messages, its commands and its form."""
