"""A document's raw content as an HTTP answer (dmp.front.content): sent at once when it was
opened whole before the answer, streamed otherwise; the same bytes and headers either way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.responses import StreamingResponse

from dmp.access import documents as access_documents
from dmp.app import create_app
from dmp.front import content
from dmp.runtime import Runtime
from tests.factories import GP, ins_for, new_document, open_record, pro
from tests.fhir_helpers import bearer

INS = ins_for(43)


def _answers(world: Runtime, path: str) -> tuple[int, dict[str, str], bytes]:
    with TestClient(create_app(world)) as client:
        r = client.get(path, headers={**bearer(world, pro(world, GP)), "Accept": "*/*"})
    kept = {k: v for k, v in r.headers.items() if k not in ("x-request-id", "date")}
    return r.status_code, kept, r.content


@pytest.mark.parametrize("size", [10, 300 * 1024])  # one chunk, several
def test_sent_at_once_and_streamed_answer_the_same(
    world: Runtime, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    open_record(world, INS)
    gp = world.access(pro(world, GP))
    gp.declare_consent(INS)
    stored = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    doc = gp.deposit_document(INS, new_document(world.clock.now()), stored)
    binary = f"/fhir/Binary/{doc.patient_id}.{doc.logical_id}"
    api = f"/api/records/{INS.value}/documents/{doc.logical_id}/content?oid={INS.oid}"
    kinds: list[str] = []
    answer = content.content_response

    def spy(*args: object, **kwargs: object) -> object:
        made = answer(*args, **kwargs)  # type: ignore[arg-type]
        kinds.append("stream" if isinstance(made, StreamingResponse) else "whole")
        return made

    monkeypatch.setattr("dmp.fhir.binary.content_response", spy)
    monkeypatch.setattr("dmp.api.records.content_response", spy)
    whole = [_answers(world, binary), _answers(world, api)]
    monkeypatch.setattr(access_documents, "EAGER_CHUNKS", 0)  # every content streamed
    streamed = [_answers(world, binary), _answers(world, api)]
    assert kinds == ["whole", "whole", "stream", "stream"]
    assert whole == streamed
    assert whole[0][0] == 200 and whole[0][2] == stored
    assert whole[0][1]["content-length"] == str(size)
    assert whole[0][1]["content-disposition"] == "attachment"


def test_an_iterator_is_streamed_and_a_list_sent_at_once() -> None:
    def parts() -> Iterator[bytes]:
        yield b"a"

    class Doc:
        mime_type = "text/plain"
        size = 2

    assert isinstance(content.content_response(Doc(), parts()), StreamingResponse)  # type: ignore[arg-type]
    whole = content.content_response(Doc(), [b"a", b"b"])  # type: ignore[arg-type]
    assert not isinstance(whole, StreamingResponse) and whole.body == b"ab"
