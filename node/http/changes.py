"""What follows a change to the directory made through the HTTP face."""

from __future__ import annotations

import logging

from ..errors import MosaicError
from .context import Ctx

log = logging.getLogger("mosaic.http")


async def after_write(ctx: Ctx) -> None:
    """Wake the daemon's uploader and append the change to the backends' index copies."""
    d = ctx.daemon
    if d is not None:
        d.upload_soon.set()
    if ctx.engine.config.backends:
        try:
            await ctx.run(ctx.engine.save_index_copy)
        except MosaicError as e:  # journaled; the next save sends it
            log.warning("index copy not updated: %s", e)
            ctx.events.publish("error", what="index-copy", message=str(e)[:300])
