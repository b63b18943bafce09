"""What the flowcharts (deploy and pea) share: who takes a transition, and their rendering in the README.

Each flowchart is a transition table (`flows.deploy.machine`, `flows.pea.machine`); the README shows
each as a mermaid diagram between markers, rewritten by `make flowchart` (`python -m flows.flowchart`)
and checked by a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Actor(StrEnum):
    SYSTEM = "system"
    PERSON = "person"  # the requester or an admin, with a button
    ADMIN = "admin"  # an admin only, with a button

    @property
    def presses(self) -> bool:
        """Whether the transition is asked for by someone pressing a button."""
        return self is not Actor.SYSTEM


class _Named(Protocol):
    @property
    def value(self) -> str: ...


class Edge(Protocol):
    """A row of a transition table, as a diagram shows it."""

    @property
    def source(self) -> _Named: ...
    @property
    def target(self) -> _Named: ...
    @property
    def label(self) -> str: ...
    @property
    def actor(self) -> Actor: ...
    @property
    def guard(self) -> _Named | None: ...


def mermaid(initial: _Named, edges: Iterable[Edge], terminal: Iterable[_Named] = ()) -> str:
    """A transition table as a mermaid state diagram, one line per transition."""
    lines = ["stateDiagram-v2", f"    [*] --> {initial.value}"]
    for t in edges:
        label = t.label if t.guard is None else f"{t.label} [{t.guard.value}]"
        if t.actor.presses:
            label = f"{label} ({t.actor.value})"
        lines.append(f"    {t.source.value} --> {t.target.value}: {label}")
    lines.extend(f"    {state.value} --> [*]" for state in terminal)
    return "\n".join(lines)


@dataclass(frozen=True)
class ReadmeBlock:
    """A diagram of the README: its marker name, the module it comes from, and how to render it."""

    name: str  # "flowchart", "pea flowchart"
    source: str
    render: Callable[[], str]

    # Markdown's comment idiom: invisible in the rendered README.
    @property
    def begin(self) -> str:
        return f"[//]: # ({self.name} begins: generated from {self.source} by make flowchart; do not edit)"

    @property
    def end(self) -> str:
        return f"[//]: # ({self.name} ends)"

    def text(self) -> str:
        return f"{self.begin}\n```mermaid\n{self.render()}\n```\n{self.end}"


def write_readme(path: str, blocks: list[ReadmeBlock]) -> None:
    """Replace each block of the README with the one rendered from its table."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    for block in blocks:
        start, end = text.index(block.begin), text.index(block.end) + len(block.end)
        text = text[:start] + block.text() + text[end:]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def readme_blocks() -> list[ReadmeBlock]:
    from flows.deploy.machine import README as DEPLOY
    from flows.pea.machine import README as PEA

    return [DEPLOY, PEA]


if __name__ == "__main__":
    import sys

    write_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md", readme_blocks())
