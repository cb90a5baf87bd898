"""Text files as bytes: which encoding a data file is in, its line endings, and the real place (byte
offset and line) of a problem that a reader reports only within its own buffer; and what a value read
from a data file is, in JSON's words, for messages."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

SAMPLE_BYTES = 4 << 20  # what the detector reads; the whole file is then decoded to confirm
PREFERRED = ("utf_16", "utf_32", "cp1252", "latin_1", "iso8859_15")  # on a tie in charset-normalizer's ranking


def detect_encoding(path: Path) -> tuple[str, str]:
    """(Python codec name, how it was found). UTF-8 (with or without BOM) first, then charset-normalizer."""
    with open(path, "rb") as stream:
        sample = stream.read(SAMPLE_BYTES)
    if sample.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig", "UTF-8 with a byte-order mark"
    if _decodes(path, "utf-8"):
        return "utf-8", "UTF-8"
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    best = matches[0] if matches else None
    if best is not None:  # on equal evidence, Western European text is more often cp1252 than cp1250 or cp1257
        tied = [m for m in matches if m.chaos <= best.chaos and m.encoding in PREFERRED]
        best = min(tied, key=lambda m: PREFERRED.index(m.encoding)) if tied else best
    candidates = ([best.encoding] if best is not None else []) + ["cp1252", "latin-1"]
    for encoding in candidates:
        if _decodes(path, encoding):
            return encoding, "charset-normalizer" if best is not None and encoding == best.encoding else "fallback"
    return "latin-1", "fallback"


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def line_endings(path: Path) -> str:
    with open(path, "rb") as stream:
        sample = stream.read(SAMPLE_BYTES)
    crlf = sample.count(b"\r\n")
    lf, cr = sample.count(b"\n") - crlf, sample.count(b"\r") - crlf
    kinds = [name for name, count in (("CRLF (Windows)", crlf), ("LF", lf), ("CR (old Mac)", cr)) if count]
    return " and ".join(kinds) if kinds else "none (one line)"


def first_bad_byte(path: Path, encoding: str) -> tuple[int, int]:
    """(offset of the first byte that does not decode, its 1-based line), read in chunks."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, newlines = 0, 0
    with open(path, "rb") as stream:
        while True:
            chunk = stream.read(1 << 20)
            pending = decoder.getstate()[0]  # bytes of an unfinished character from the last chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeError as exc:  # also UTF-16's "stream does not start with BOM", which has no offset
                within = getattr(exc, "start", 0)
                start = offset - len(pending) + within
                head = (pending + chunk)[: max(within, 0)]
                return start, newlines - pending.count(b"\n") + head.count(b"\n") + 1
            if not chunk:
                return offset, 0
            offset += len(chunk)
            newlines += chunk.count(b"\n")


def json_place(path: Path, message: str, encoding: str) -> str:
    """`file:line` for a JSON parser message that gives a character position."""
    found = re.search(r"position (\d+)", message)
    if not found:
        return str(path)
    try:
        with open(path, encoding=encoding, errors="replace") as stream:
            head = stream.read(int(found.group(1)))
    except OSError:
        return str(path)
    return f"{path}:{head.count(chr(10)) + 1}"


def json_kind(value) -> str:
    """What a value read from a data file is, in JSON's words for a message (`null`, `an array`, `an object`,
    `a string`, `a number`, `true`/`false`), never a Python type name: `line 3 is null, not a JSON object`.
    Parquet's lists arrive as numpy arrays and its structs as dicts; its other types get a plain name."""
    import datetime
    import decimal
    import numbers

    if value is None:
        return "null"
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "true" if value else "false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (numbers.Number, decimal.Decimal)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        return "an array"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "binary data"
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta)):
        return "a date or time"
    return "a value that is not a string"
