"""What the domain says no with: answers for people, and a deploy that moved underneath a worker."""


class Refused(Exception):
    """A person's request or click cannot be done; the message says why and what to do instead."""


class Superseded(Exception):
    """The row changed since it was read (another worker or a click): stop and look again."""
