"""Errors of avatar preparation and loading, readable as they are by a user."""

from __future__ import annotations


class AvatarError(ValueError):
    """The avatar source or request cannot be used; the message says why and what to do."""


class AvatarNotFoundError(AvatarError):
    """No prepared avatar has this id (the server answers 404)."""
