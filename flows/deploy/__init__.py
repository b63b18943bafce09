"""The deploy train: the flowchart (a transition table), the queue, the steps and their undo."""

# Imported for its mapper hook: every write of a deploy row keeps its durations in step with its times.
from flows.deploy import figures as figures
