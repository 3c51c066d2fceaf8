"""A document's content as an HTTP answer, shared by the JSON API and the FHIR API."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.responses import Response, StreamingResponse

from dmp.access.views import DocumentView


def content_response(
    doc: DocumentView, chunks: Iterable[bytes], *, attachment: bool = False
) -> Response:
    """A document's content, streamed as it is decrypted (sent at once when it is already
    whole, a list: a stream would hop to a worker thread for every chunk): never cached,
    never sniffed."""
    headers = {
        # The stored MIME type as it is: no charset added (a text/* media_type would get one).
        "Content-Type": doc.mime_type,
        "Content-Length": str(doc.size),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if attachment:
        headers["Content-Disposition"] = "attachment"
    if isinstance(chunks, list):
        return Response(b"".join(chunks), headers=headers)
    return StreamingResponse(chunks, headers=headers)
