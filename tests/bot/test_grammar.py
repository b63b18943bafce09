"""The command grammar: `/deploy`'s quick form with options anywhere after the PR number, and its subcommands."""

from __future__ import annotations

import pytest

from bot.grammar import BadInput, Form, QuickDeploy, Subcommand
from bot.grammar import parse_deploy as parse


@pytest.mark.parametrize(("text", "expected"), [
    ("123", QuickDeploy(123)),
    ("#123 web", QuickDeploy(123, ("web",))),
    ("123 --front web --reason 'checkout is down' worker",
     QuickDeploy(123, ("web", "worker"), front=True, reason="checkout is down")),
    ('123 --skip-build --reason="hotfix" --notes "watch the queue"',
     QuickDeploy(123, skip_build=True, reason="hotfix", notes="watch the queue")),
    ("  42   --notes later ", QuickDeploy(42, notes="later")),
])
def test_the_quick_form_takes_options_anywhere_after_the_pr(text: str, expected: QuickDeploy) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("queue", Subcommand("queue")),
    ("QUEUE", Subcommand("queue")),
    ("cancel", Subcommand("cancel")),
    ("cancel 7", Subcommand("cancel", ("7",))),
    ('freeze "release testing" today', Subcommand("freeze", ("release testing", "today"))),
    ("freeze", Subcommand("freeze")),
])
def test_subcommands(text: str, expected: Subcommand) -> None:
    assert parse(text) == expected


def test_no_text_means_the_form() -> None:
    assert parse("   ") == Form()


@pytest.mark.parametrize(("text", "quoted"), [
    ("abc", "`abc`"),
    ("-5", "`-5`"),
    ("0", "`0`"),
    ("12 --force", "`--force`"),
    ('12 --reason "unclosed', "`12 --reason \"unclosed`"),
    ("cancel abc", "`abc`"),
    ("queue extra", "`queue extra`"),
])
def test_bad_input_is_quoted_back(text: str, quoted: str) -> None:
    with pytest.raises(BadInput) as refused:
        parse(text)
    assert quoted in str(refused.value)


def test_a_reason_without_an_emergency_option_is_refused() -> None:
    with pytest.raises(BadInput, match="--notes"):
        parse('12 --reason "just because"')


def test_quoted_input_is_escaped_so_it_cannot_mention_anyone() -> None:
    with pytest.raises(BadInput) as refused:
        parse("<!channel>")
    assert "<!channel>" not in str(refused.value) and "&lt;!channel&gt;" in str(refused.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("billing 42 api", QuickDeploy(42, ("api",), train="billing")),
    ("Billing #42", QuickDeploy(42, train="billing")),
    ("billing", Form("billing")),
    ("queue billing", Subcommand("queue", train="billing")),
    ("queue", Subcommand("queue")),
    ('freeze billing "release testing"', Subcommand("freeze", ("release testing",), train="billing")),
    ("freeze release testing", Subcommand("freeze", ("release", "testing"))),
    ("cancel billing 7", Subcommand("cancel", ("7",), train="billing")),
    ("42", QuickDeploy(42)),
])
def test_a_train_is_named_by_the_first_word_after_the_command(text: str, expected: object) -> None:
    assert parse(text, trains=("app", "billing")) == expected


def test_a_word_that_is_no_train_says_which_trains_there_are_and_a_misplaced_one_where_it_goes() -> None:
    with pytest.raises(BadInput, match="is not a pull request number, a train \\(`app`, `billing`\\) or a command"):
        parse("payments 42", trains=("app", "billing"))
    with pytest.raises(BadInput, match="goes after `queue`: type `/deploy queue billing`"):
        parse("billing queue", trains=("app", "billing"))
