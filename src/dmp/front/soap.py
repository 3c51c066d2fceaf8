"""SOAP 1.2 messages as the XDS.b door takes and gives them: the envelope (inline, or MTOM/XOP
``multipart/related`` with its attachments), WS-Addressing, faults.

XML is parsed as on the FHIR door: no DTD (SOAP 1.2 forbids one), no entity expansion, no
network, depth capped; the body size is capped by the application (``DMP_MAX_BODY_BYTES``).
"""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from lxml import etree

from dmp.domain import cda
from dmp.errors import InvalidInput

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
XOP = "http://www.w3.org/2004/08/xop/include"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SOAP_XML = "application/soap+xml"
MAX_DEPTH = 128


class SoapFault(InvalidInput):
    """A message that is not one this door takes (env:Sender)."""


@dataclass(frozen=True)
class SoapMessage:
    action: str
    message_id: str | None
    body: etree._Element  # the Body's one child (the request element)
    security: etree._Element | None  # wsse:Security, where the VIHF assertion is
    attachments: dict[str, bytes] = field(default_factory=dict)  # by Content-ID (no <>)
    mtom: bool = False


def parse(content_type: str, raw: bytes) -> SoapMessage:
    """The request: a SOAP 1.2 envelope, inline or MTOM (:class:`SoapFault` otherwise)."""
    media = content_type.split(";", 1)[0].strip().lower()
    attachments: dict[str, bytes] = {}
    if media == "multipart/related":
        xml, attachments = _multipart(content_type, raw)
    elif media in (SOAP_XML, "text/xml", "application/xml"):
        xml = raw
    else:
        raise SoapFault(f"a SOAP 1.2 message is {SOAP_XML} or MTOM multipart/related")
    envelope = _xml(xml)
    if envelope.tag != f"{{{SOAP12}}}Envelope":
        raise SoapFault("not a SOAP 1.2 envelope (namespace http://www.w3.org/2003/05/...)")
    header = envelope.find(f"{{{SOAP12}}}Header")
    body = envelope.find(f"{{{SOAP12}}}Body")
    if body is None or len(body) != 1:
        raise SoapFault("the SOAP Body must hold one request element")
    action = (header.findtext(f"{{{WSA}}}Action") if header is not None else None) or ""
    if not action.strip():
        raise SoapFault("the WS-Addressing Action header is required")
    message_id = header.findtext(f"{{{WSA}}}MessageID") if header is not None else None
    security = header.find(f"{{{WSSE}}}Security") if header is not None else None
    request = body[0]
    _resolve_xop(request, attachments)
    return SoapMessage(
        action.strip(),
        message_id.strip() if message_id else None,
        request,
        security,
        attachments,
        mtom=bool(attachments) or media == "multipart/related",
    )


def _xml(raw: bytes) -> etree._Element:
    """The envelope, parsed as a CDA document is (SOAP 1.2 forbids a DTD in any case)."""
    try:
        return cda.parse_xml(raw, "the SOAP message", max_depth=MAX_DEPTH)
    except InvalidInput as exc:
        raise SoapFault(exc.message) from None


def _multipart(content_type: str, raw: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The root part (the envelope) and the other parts by Content-ID."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + raw)
    if not message.is_multipart():
        raise SoapFault("the multipart/related message has no parts (check its boundary)")
    start = (message.get_param("start") or "").strip("<>")  # type: ignore[union-attr]
    root: bytes | None = None
    parts: dict[str, bytes] = {}
    for n, part in enumerate(message.get_payload()):
        payload = part.get_payload(decode=True) or b""
        cid = unquote((part.get("Content-ID") or "").strip().strip("<>"))
        if (start and cid == start) or (not start and n == 0):
            root = payload
        elif cid:
            parts[cid] = payload
    if root is None:
        raise SoapFault("the multipart/related message has no root part (start)")
    return root, parts


def _resolve_xop(request: etree._Element, attachments: dict[str, bytes]) -> None:
    """Each ``xop:Include`` is checked to name an attachment; the element that holds it is
    marked with the Content-ID, its content read with :func:`binary`."""
    for include in request.iter(f"{{{XOP}}}Include"):
        href = include.get("href", "")
        cid = unquote(href.removeprefix("cid:"))
        if not href.startswith("cid:") or cid not in attachments:
            raise SoapFault(f"xop:Include names no attachment of the message: {href[:80]!r}")
        parent = include.getparent()
        if parent is not None:
            parent.set("{urn:dmp:xop}cid", cid)


def binary(element: etree._Element, message: SoapMessage) -> bytes:
    """The content of an xs:base64Binary element: inline base64, or its MTOM attachment."""
    import base64
    import binascii

    cid = element.get("{urn:dmp:xop}cid")
    if cid is not None:
        return message.attachments[cid]
    try:
        return base64.b64decode("".join((element.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise SoapFault("a Document element is not base64") from None


def envelope(action: str, relates_to: str | None, body: etree._Element) -> bytes:
    """A SOAP 1.2 response with its WS-Addressing headers."""
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"s": SOAP12, "a": WSA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    a = etree.SubElement(header, f"{{{WSA}}}Action")
    a.text = action
    a.set(f"{{{SOAP12}}}mustUnderstand", "true")
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(body)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def mtom(
    action: str,
    relates_to: str | None,
    body: etree._Element,
    parts: list[tuple[etree._Element, str, bytes]],
) -> tuple[bytes, str]:
    """An MTOM response: each (element, MIME type, content) becomes an attachment the element
    refers to with ``xop:Include``. Returns the body and its Content-Type."""
    cids = []
    for n, (element, mime, content) in enumerate(parts):
        cid = f"doc{n}.{uuid.uuid4().hex}@dmp"
        include = etree.SubElement(element, f"{{{XOP}}}Include", nsmap={"xop": XOP})
        include.set("href", f"cid:{cid}")
        cids.append((cid, mime, content))
    root = envelope(action, relates_to, body)
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    start = f"root.{uuid.uuid4().hex}@dmp"
    out = [
        f"--{boundary}\r\n".encode(),
        b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n',
        b"Content-Transfer-Encoding: binary\r\n",
        f"Content-ID: <{start}>\r\n\r\n".encode(),
        root,
        b"\r\n",
    ]
    for cid, mime, content in cids:
        out += [
            f"--{boundary}\r\n".encode(),
            f"Content-Type: {mime}\r\n".encode(),
            b"Content-Transfer-Encoding: binary\r\n",
            f"Content-ID: <{cid}>\r\n\r\n".encode(),
            content,
            b"\r\n",
        ]
    out.append(f"--{boundary}--\r\n".encode())
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
        f'start="<{start}>"; start-info="application/soap+xml"'
    )
    return b"".join(out), content_type


def fault(code: str, reason: str, *, subcode: str | None = None) -> bytes:
    """A SOAP 1.2 fault: ``code`` Sender (the request is at fault) or Receiver (the server)."""
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"s": SOAP12, "a": WSA, "wsse": WSSE})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    etree.SubElement(
        header, f"{{{WSA}}}Action"
    ).text = "http://www.w3.org/2005/08/addressing/soap/fault"
    body = etree.SubElement(env, f"{{{SOAP12}}}Body")
    f = etree.SubElement(body, f"{{{SOAP12}}}Fault")
    c = etree.SubElement(f, f"{{{SOAP12}}}Code")
    etree.SubElement(c, f"{{{SOAP12}}}Value").text = f"s:{code}"
    if subcode:
        sub = etree.SubElement(c, f"{{{SOAP12}}}Subcode")
        etree.SubElement(sub, f"{{{SOAP12}}}Value").text = subcode
    r = etree.SubElement(f, f"{{{SOAP12}}}Reason")
    text = etree.SubElement(r, f"{{{SOAP12}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = reason
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))
