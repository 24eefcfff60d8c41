"""Parse an HTML report with the stdlib parser: every reference must be an embedded PNG."""

import base64
import io
from html.parser import HTMLParser

from PIL import Image

# attributes that make a browser fetch something
_FETCHING = {"src", "href", "srcset", "data", "poster", "background", "action", "formaction"}


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict] = []
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs)
        for k, v in attrs.items():
            if k in _FETCHING or (k == "style" and "url(" in (v or "")):
                self.refs.append((tag, k, v or ""))

    def handle_data(self, data):
        self.text.append(data)


def check_self_contained(text: str) -> tuple[list[Image.Image], str]:
    """Assert that ``text`` fetches nothing outside itself and that every ``<img>`` holds a PNG
    that decodes; return the decoded images and the page's visible text."""
    p = _Refs()
    p.feed(text)
    p.close()
    assert p.imgs, "no images in the report"
    for tag, attr, value in p.refs:
        assert tag == "img" and attr == "src" and value.startswith("data:image/png;base64,"), (
            f"external reference <{tag} {attr}={value[:60]!r}>")
    assert not {"link", "script", "iframe", "object", "embed"} & set(p.tags)
    assert "url(" not in text and "@import" not in text
    images = []
    for img in p.imgs:
        raw = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        Image.open(io.BytesIO(raw)).verify()  # chunk CRCs, structure
        im = Image.open(io.BytesIO(raw))
        im.load()  # decompresses every row
        assert im.width > 100 and im.height > 100
        images.append(im)
    return images, " ".join(" ".join(p.text).split())
