"""The deploy train: the flowchart (a transition table), the queue, the steps and their undo."""
