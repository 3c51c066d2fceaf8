"""A CDA document's human-readable narrative as safe HTML, for the patient and professional
portals.

Each section's title and narrative block (``section/text``: paragraphs, lists, tables, content,
line breaks) becomes plain HTML; whatever else it holds is kept as text. The result then passes an
allowlist sanitizer (nh3, the Ammonia library): no script, no style, no attribute but table spans,
no link or image, so nothing is fetched from anywhere and nothing runs.
"""

from __future__ import annotations

from html import escape

import nh3
from lxml import etree

from dmp.domain.cda import MAX_CDA_BYTES, _parser

_V3 = "{urn:hl7-org:v3}"
_MAP = {
    "paragraph": "p",
    "item": "li",
    "table": "table",
    "thead": "thead",
    "tbody": "tbody",
    "tfoot": "tfoot",
    "tr": "tr",
    "th": "th",
    "td": "td",
    "caption": "caption",
    "content": "span",
    "sub": "sub",
    "sup": "sup",
}
ALLOWED_TAGS = {
    "h2",
    "h3",
    "h4",
    "p",
    "ul",
    "ol",
    "li",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "th",
    "td",
    "caption",
    "span",
    "sub",
    "sup",
    "br",
    "section",
}
ALLOWED_ATTRIBUTES = {"td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"}}


def sanitize(html: str) -> str:
    """The allowlist: only the tags and attributes above survive; script and style contents
    are dropped, not shown."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=set(),
        strip_comments=True,
        link_rel=None,
    )


def _local(el: etree._Element) -> str:
    tag = el.tag if isinstance(el.tag, str) else ""
    return tag[len(_V3) :] if tag.startswith(_V3) else tag


def _inline(el: etree._Element) -> str:
    """An element of the narrative block, as HTML (text escaped; unknown tags kept as text)."""
    out: list[str] = []
    name = _local(el)
    if name == "br":
        out.append("<br>")
    elif name == "list":
        tag = "ol" if el.get("listType") == "ordered" else "ul"
        out.append(f"<{tag}>{_children(el)}</{tag}>")
    elif name in _MAP:
        tag = _MAP[name]
        attrs = ""
        if tag in ("td", "th"):
            for span in ("colspan", "rowspan"):
                value = el.get(span)
                if value and value.isdigit():
                    attrs += f' {span}="{value}"'
        out.append(f"<{tag}{attrs}>{_children(el)}</{tag}>")
    else:
        out.append(_children(el))
    if el.tail:
        out.append(escape(el.tail))
    return "".join(out)


def _children(el: etree._Element) -> str:
    parts = [escape(el.text or "")]
    parts.extend(_inline(child) for child in el if isinstance(child.tag, str))
    return "".join(parts)


def cda_narrative_html(content: bytes) -> str | None:
    """The narrative of a CDA document as sanitized HTML, or None when the content is not a
    readable CDA document (an unstructured PDF body, or not CDA at all)."""
    if len(content) > MAX_CDA_BYTES:
        return None
    try:
        root = etree.fromstring(content, _parser())
    except etree.XMLSyntaxError:
        return None
    if _local(root) != "ClinicalDocument":
        return None
    parts: list[str] = []
    title = root.find(f"{_V3}title")
    if title is not None and title.text:
        parts.append(f"<h2>{escape(title.text.strip())}</h2>")
    for section in root.iter(f"{_V3}section"):
        heading = section.find(f"{_V3}title")
        text = section.find(f"{_V3}text")
        if text is None:
            continue
        parts.append("<section>")
        if heading is not None and heading.text:
            parts.append(f"<h3>{escape(heading.text.strip())}</h3>")
        parts.append(_children(text))
        parts.append("</section>")
    if len(parts) <= 1:
        return None
    return sanitize("".join(parts))
