"""What the domain says no with: answers for people, and a deploy that moved underneath a worker."""


class Refused(Exception):
    """A person's request or click cannot be done; the message says why and what to do instead.

    `field` names the part of the request at fault (`pr`, `processes`, `emergency`, `reason`,
    `notes`), so a form can show the answer beside it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def typed(text: str) -> str:
    """Someone's input echoed in a refusal: `<!channel>` or `<@U123>` is shown, never triggered."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Superseded(Exception):
    """The row changed since it was read (another worker or a click): stop and look again."""
