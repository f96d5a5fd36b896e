"""uvicorn's websockets-sansio protocol with a permessage-deflate that lets one compressed frame serve every client.

Shell layer. With `JOBPULSE_WS_DEFLATE` on, `jobpulse serve` runs uvicorn with
this protocol class. uvicorn's own negotiates permessage-deflate (RFC 7692)
with context takeover: each connection keeps a compressor whose output depends
on everything it sent before, so the hub cannot write one pre-built frame to
many sockets, and each compressor holds its window (~300 KiB a client). Here
the server answers with `server_no_context_takeover` (every message it sends is
compressed on its own, so the same bytes decode on every connection; the hub
compresses each message once: `Outgoing.deflated`) and
`client_no_context_takeover` (no decompressor is kept between a client's few
messages). Browsers accept both (RFC 7692 7.1.1).
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.server import ServerProtocol

# The window of the shared compression: 4 KiB covers a tick's message; bigger windows cost the client memory.
WINDOW_BITS = 12


class SharedDeflateProtocol(WebSocketsSansIOProtocol):
    """WebSocketsSansIOProtocol whose permessage-deflate keeps no context on either side."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.ws_per_message_deflate:
            # uvicorn builds its connection in __init__ and reads only `self.conn` afterwards.
            self.conn = ServerProtocol(
                extensions=[
                    ServerPerMessageDeflateFactory(
                        server_no_context_takeover=True,
                        client_no_context_takeover=True,
                        server_max_window_bits=WINDOW_BITS,
                        client_max_window_bits=WINDOW_BITS,
                        compress_settings={"memLevel": 5},
                    )
                ],
                max_size=config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )
