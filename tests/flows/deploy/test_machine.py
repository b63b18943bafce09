"""The transition table is the flowchart: consistent, and the README shows exactly it."""

from pathlib import Path

from flows.deploy.machine import (
    IN_FLIGHT,
    TERMINAL,
    TRANSITIONS,
    Event,
    State,
    person_transitions,
)
from flows.flowchart import readme_blocks

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_shows_each_flowchart_rendered_from_its_table() -> None:
    readme = README.read_text(encoding="utf-8")
    for block in readme_blocks():
        assert block.text() in readme, f"run `make flowchart` to update the README's {block.name}"


def test_every_state_is_reachable_from_queued_and_every_non_terminal_state_can_move() -> None:
    reachable, frontier = {State.QUEUED}, [State.QUEUED]
    while frontier:
        state = frontier.pop()
        for t in TRANSITIONS:
            if t.source == state and t.target not in reachable:
                reachable.add(t.target)
                frontier.append(t.target)
    assert reachable == set(State)
    for state in set(State) - TERMINAL:
        assert any(t.source == state and t.target != state for t in TRANSITIONS), state
    assert not any(t.source in TERMINAL for t in TRANSITIONS)


def test_only_a_queued_deploy_can_be_cancelled_and_every_person_transition_has_a_button() -> None:
    assert [t.source for t in TRANSITIONS if t.event is Event.CANCEL] == [State.QUEUED]
    assert all(t.button for t in TRANSITIONS if t.actor.value == "person")
    assert State.QUEUED not in IN_FLIGHT


def test_the_buttons_offered_depend_on_the_state_and_on_needing_attention() -> None:
    def buttons(state: State, attention: bool = False) -> list[str]:
        return [t.button for t in person_transitions(state, needs_attention=attention)]

    assert buttons(State.CANARY_CHECK) == ["Proceed", "Roll back"]
    assert buttons(State.BUILD_FAILED) == ["Retry build", "Roll back"]
    assert buttons(State.AWAITING_CONFIRMATION) == ["Done", "Roll back"]
    assert buttons(State.QUEUED) == ["Cancel"]
    assert buttons(State.ROLLING_OUT) == []
    assert buttons(State.ROLLING_OUT, attention=True) == ["Retry", "Roll back"]
    assert buttons(State.ROLLING_BACK, attention=True) == ["Retry", "Mark rolled back by hand"]
    assert buttons(State.COMPLETED) == []


def test_a_deploy_that_needs_attention_always_has_a_way_out_to_an_end_without_editing_the_database() -> None:
    """Retry may fail again forever; each state that can need attention also offers a way towards an end."""
    needing = {t.source for t in TRANSITIONS if t.event is Event.RETRIES_EXHAUSTED}
    assert needing, "no state needs attention?"
    for state in needing:
        ways_out = [t for t in person_transitions(state, needs_attention=True) if t.event is not Event.RETRY]
        assert ways_out, f"{state.value} needing attention offers only Retry"
        assert all(t.target in TERMINAL or t.target is State.ROLLING_BACK for t in ways_out), state
