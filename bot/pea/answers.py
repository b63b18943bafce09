"""What `/pea` answers: help, the list, and what came of a deploy, an extension or a release.

Every answer is ephemeral; a refusal is worded by `bot.refusals`, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.grammar import PeaCommand
from bot.pea.cards import SINCE, list_text
from bot.text import escape, when
from bot.trains import TrainFlows
from flows.errors import Refused, Why
from flows.pea.flows import PeaFlows
from flows.views import PeaView


def usage(names: list[str], slash: str) -> str:
    """`/pea help`, quoting the slash command as configured."""
    c = slash
    return "\n".join([
        "*Peas: preview environments for pull requests*",
        f"• `{c}`: every pea, free or held by whom, with its PR, commit, state, lease and URL.",
        f"• `{c} deploy &lt;pea&gt; &lt;pr&gt;`: claim the pea and deploy the PR's build to it, e.g. "
        f"`{c} deploy {names[0] if names else 'sweet-pea'} 123`. `{c} deploy` alone opens a form.",
        f"• `{c} extend &lt;pea&gt;`: keep it for another lease. `{c} release &lt;pea&gt;`: free it (scaled to zero).",
        f"Peas: {', '.join(f'`{n}`' for n in names) or 'none configured'}.",
    ])


def deployed(view: PeaView, slash: str) -> str:
    """What came of a deploy, quoting the slash command as configured."""
    return (f"Deploying #{view.pr_number} to `{escape(view.name)}`. You will get a direct message with "
            f"{view.url} when it is up; `{slash}` shows how it is going.")


def extended(view: PeaView) -> str:
    return f"`{escape(view.name)}` is yours until {when(view.claim_expires_at, SINCE)}."


def released(view: PeaView) -> str:
    return f"Released `{escape(view.name)}`: it is being scaled to zero."


async def run_listing(trains: Sequence[TrainFlows], command: PeaCommand, slash: str) -> str:
    """`/pea` or `/pea help`: about every train's peas, grouped by train when there are several with peas."""
    pools = [t for t in trains if t.peas.names]
    if command.name == "help":
        return usage([name for t in pools for name in t.peas.names], slash)
    if len(pools) <= 1:  # no pool at all: the train says peas are not set up
        return list_text(await (pools or trains)[0].peas.all())
    listed = [await t.peas.all() for t in pools]  # as the App Home reads them
    return "\n\n".join(f"*{escape(t.name)}*\n{list_text(views)}" for t, views in zip(pools, listed, strict=True))


async def run_command(peas: PeaFlows, command: PeaCommand, user_id: str, slash: str) -> str:
    """The answer to `/pea deploy|extend|release <pea>` on the pea's pool (`slash`: that command as configured;
    a Refused propagates)."""
    if command.pea is None:
        raise Refused(Why.NO_SUCH_PEA, field="pea", pea="", choices=peas.names)
    if command.name == "deploy" and command.pr is not None:
        return deployed(await peas.deploy(user_id, command.pea, command.pr), slash)
    if command.name == "extend":
        return extended(await peas.extend(user_id, command.pea))
    return released(await peas.release(user_id, command.pea))
