"""permessage-deflate (RFC 7692) as the relay and the demo agree it, on Autobahn's objects.

The relay negotiates deflate per hop (Autobahn compresses on each hop) or end
to end (the backend is offered the client's own offer and its answer is passed
back, so both hops compress alike and frames pass unchanged).  These are the
pure pieces of that agreement; the demo and test backends use
:func:`accept_first_deflate_offer` to show compression passing.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)


def client_deflate_offer(extensions: Iterable) -> Optional[PerMessageDeflateOffer]:
    """The client's first permessage-deflate offer, parsed (raises on invalid parameters)."""
    for name, params in extensions:
        if name == "permessage-deflate":
            return PerMessageDeflateOffer.parse(params)
    return None


def offers_deflate(extensions: Iterable) -> bool:
    """Whether the client's extension list offers permessage-deflate at all."""
    return any(name == "permessage-deflate" for name, _ in extensions)


def accept_first_deflate_offer(
    offers: Sequence[object],
) -> Optional[PerMessageDeflateOfferAccept]:
    """Accept the first permessage-deflate offer as offered, or none when there is none.

    What the relay's client side does (it has the backend's answer in hand by
    then) and what the demo and test backends do to show compression passing.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def accept_backend_deflate(response: object) -> Optional[PerMessageDeflateResponseAccept]:
    """Accept a backend's permessage-deflate answer to the proxy's own (per hop) offer."""
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


def end_to_end_accept(
    offer: PerMessageDeflateOffer, response: Optional[PerMessageDeflateResponse]
) -> tuple[Optional[PerMessageDeflateOfferAccept], Optional[tuple[bool, bool]]]:
    """The client's accept for its ``offer``, given the backend's ``response`` to the same offer.

    The backend was offered exactly what the client offered, so its answer is
    one the client may get: the client is told the backend's parameters for
    the client's direction (``client_no_context_takeover``,
    ``client_max_window_bits``) and both hops then compress alike, which lets
    the fast path pass compressed frames on unchanged.  Returns the accept (None:
    the backend declined, the client gets no deflate) and, when agreed, whether
    the client and the backend start each message with a fresh window.  Raises
    when the answer does not fit the offer (RFC 7692 7.1).
    """
    if response is None:
        return None, None
    accept = PerMessageDeflateOfferAccept(
        offer,
        request_no_context_takeover=bool(response.client_no_context_takeover),
        request_max_window_bits=response.client_max_window_bits or 0,
        no_context_takeover=bool(response.server_no_context_takeover),
        window_bits=response.server_max_window_bits or None,
    )
    return accept, (
        bool(response.client_no_context_takeover),
        bool(response.server_no_context_takeover),
    )
