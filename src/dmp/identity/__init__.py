"""Who is acting: credentials in, :class:`Actor` out."""

from dmp.identity.actor import Actor, ActorKind

__all__ = ["Actor", "ActorKind"]
