"""What the Slack surface keeps between messages, as the surface needs it (`storage.slack.SlackStore` has it).

Where its cards and DMs are (to edit them later, from any copy) and who opened the App Home.
"""

from __future__ import annotations

from typing import Any, Protocol


class Ref(Protocol):
    """A posted message: where it is, and what editing it again needs."""

    @property
    def channel(self) -> str: ...

    @property
    def ts(self) -> str: ...

    @property
    def data(self) -> dict[str, Any]: ...


class MessageStore(Protocol):
    async def message(self, key: str) -> Ref | None: ...
    async def keep_message(self, key: str, channel: str, ts: str, data: dict[str, Any] | None = None) -> None: ...
    async def forget_message(self, key: str) -> None: ...
    async def home_viewers(self) -> set[str]: ...
    async def add_home_viewer(self, user_id: str) -> None: ...
