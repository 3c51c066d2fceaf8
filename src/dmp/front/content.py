"""A document's content as an HTTP answer, shared by the JSON API and the FHIR API."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.responses import StreamingResponse

from dmp.access.views import DocumentView


def content_response(
    doc: DocumentView, chunks: Iterator[bytes], *, attachment: bool = False
) -> StreamingResponse:
    """A document's content, streamed as it is decrypted: never cached, never sniffed."""
    headers = {
        # The stored MIME type as it is: no charset added (a text/* media_type would get one).
        "Content-Type": doc.mime_type,
        "Content-Length": str(doc.size),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if attachment:
        headers["Content-Disposition"] = "attachment"
    return StreamingResponse(chunks, headers=headers)
