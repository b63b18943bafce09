"""What the Slack listeners work with: every train's public API and config, which train a request is for (DESIGN
§6), the App Home, and answering people."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.home import HomePublisher
from bot.trains import TrainFlows
from flows.config import CommandsConfig

log = logging.getLogger(__name__)


class WhichTrain(Exception):
    """A command that needs a train named none, and where it was typed implies none: the message lists the trains
    and what to type."""


@dataclass(frozen=True)
class Surface:
    """Every train (in the file's order), the commands they share, and the App Home."""

    trains: Mapping[str, TrainFlows]
    commands: CommandsConfig
    home: HomePublisher

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.trains)

    def of_channel(self, channel: str | None) -> TrainFlows | None:
        """The one train whose channel `channel` is (None for a DM, another channel, or one trains share)."""
        if len(self.trains) == 1:
            return next(iter(self.trains.values()))
        found = [t for t in self.trains.values() if channel and t.config.slack.channel == channel]
        return found[0] if len(found) == 1 else None

    def implied(self, named: str | None, channel: str | None) -> TrainFlows | None:
        """The train a command acts on: the one named, else the channel's one train, else None."""
        return self.trains[named] if named is not None else self.of_channel(channel)

    def train_for(self, named: str | None, channel: str | None, example: str) -> TrainFlows:
        """`implied`, or WhichTrain saying how to name one: `example` is the command with `{train}` for its name."""
        found = self.implied(named, channel)
        if found is None:
            raise WhichTrain(self._which_train(example, channel))
        return found

    def _which_train(self, example: str, channel: str | None) -> str:
        where = ("Several trains share this channel" if channel and any(
            t.config.slack.channel == channel for t in self.trains.values()) else "This is not a train's channel")
        trains = ", ".join(f"`{t.name}` (<#{t.config.slack.channel}>)" for t in self.trains.values())
        forms = " or ".join(f"`{example.format(train=name)}`" for name in self.names[:2])
        return f"{where}: which train? Name it first, e.g. {forms}. The trains: {trains}."

    def of_pea(self, pea: str) -> TrainFlows | None:
        """The train whose pool has pea `pea` (names are unique across trains)."""
        return next((t for t in self.trains.values() if pea in t.peas.names), None)

    async def of_deploy(self, deploy_id: int) -> TrainFlows | None:
        """The train deploy `deploy_id` is on, if it exists (and its train is still configured)."""
        view = await next(iter(self.trains.values())).deploys.deploy(deploy_id)
        return None if view is None else self.trains.get(view.train)


async def tell(client: AsyncWebClient, user_id: str, text: str, *, respond: AsyncRespond | None = None,
               channel: str | None = None) -> None:
    """Answer one person ephemerally: through the interaction's response_url when it has one, else in
    `channel`, else (or if that fails: a channel the app is not in) in their DM with the app. Never raises."""
    if respond is not None and respond.response_url:
        try:
            await respond(text=text, response_type="ephemeral", replace_original=False)
            return
        except Exception as exc:
            log.warning("cannot answer %s through the response_url: %s", user_id, exc)
    for where in (channel, None) if channel else (None,):
        try:
            if where is None:
                where = (await client.conversations_open(users=user_id))["channel"]["id"]
            await client.chat_postEphemeral(channel=where, user=user_id, text=text)
            return
        except SlackApiError as exc:
            log.warning("cannot answer %s in %s: %s", user_id, where or "their DM", exc.response.get("error"))
        except Exception as exc:
            log.warning("cannot answer %s in %s: %s", user_id, where or "their DM", exc)
