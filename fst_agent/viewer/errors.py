"""The viewer's errors: each names what the user asked for and what is wrong with it."""

from __future__ import annotations


class ViewerError(Exception):
    """A run, page or parameter that cannot be served; ``status`` is the HTTP status it becomes."""

    status = 400


class NotFound(ViewerError):
    """No such run, step, episode, context or page."""

    status = 404


class StoreUnreadable(ViewerError):
    """A trace store the viewer cannot read (a newer layout, a damaged file)."""

    status = 500
