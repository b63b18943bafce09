"""What the Slack listeners work with: the domain's public API, the config, the App Home, and answering people."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.home import HomePublisher
from flows.config import CommandsConfig, TrainConfig
from flows.deploy.flows import DeployFlows
from flows.pea.flows import PeaFlows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Surface:
    config: TrainConfig
    deploys: DeployFlows
    peas: PeaFlows
    home: HomePublisher

    @property
    def commands(self) -> CommandsConfig:
        return self.config.slack.commands


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
