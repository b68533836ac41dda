"""An image's width and height, read from its header (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM) undecoded:
the decompression-bomb cap then holds however the process imported OpenCV (which reads its own cap
once, at its first import: a caller that imported cv2 before batch.decode gets its 1-gigapixel default)."""

import re
import struct
from collections.abc import Iterator

# "P5 <w> <h> ..." with whitespace and # comments between the fields.
_PNM_SIZE = re.compile(rb"P[1-6](?:\s|#[^\n]*\n)*(\d+)(?:\s|#[^\n]*\n)+(\d+)")
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header, or None when the format is not recognised or the header is cut."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"\xff\xd8":
            sof = next((i for marker, i in jpeg_markers(data) if marker in _JPEG_SOF), None)
            return None if sof is None else struct.unpack(">HH", data[sof + 5 : sof + 9])[::-1]  # stored (h, w)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)  # a negative height means top-down rows
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            width, height = tiff_tag(data, 256), tiff_tag(data, 257)
            return None if width is None or height is None else (width, height)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if chunk == b"VP8L":  # lossless: 14-bit width-1, height-1 after a signature byte
                bits = int.from_bytes(data[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
            return None
        if found := _PNM_SIZE.match(data, 0, 256):
            return int(found[1]), int(found[2])
    except (struct.error, IndexError, ValueError):
        return None
    return None


# In entropy-coded data a 0xFF byte is followed by 0x00 (stuffing), a restart
# marker 0xD0-0xD7 or more 0xFF fill; anything else is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_markers(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, its index) for each marker of the JPEG at the start of `data`, up to its end-of-image
    marker or where the data runs out: segments followed by their lengths, not searched for (stray bytes
    between them skipped, as libjpeg does), a scan's entropy-coded data skipped to the next marker."""
    i = 2
    while i + 1 < len(data):
        if data[i] != 0xFF:
            i = data.find(b"\xff", i)
            if i < 0:
                return
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0xD9, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            yield marker, i
            if marker == 0xD9:
                return
            i += 2
            continue
        if i + 4 > len(data):
            return
        yield marker, i
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: its entropy-coded data runs to the next marker
            found = _NEXT_MARKER.search(data, i)
            if found is None:
                return
            i = found.start()


def tiff_tag(tiff: bytes, tag: int) -> int | None:
    """A SHORT or LONG tag's value in a TIFF header's first IFD (the page OpenCV decodes); None when
    it is absent or the header is malformed."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    try:
        offset = struct.unpack(order + "I", tiff[4:8])[0]
        for k in range(struct.unpack(order + "H", tiff[offset : offset + 2])[0]):
            entry = tiff[offset + 2 + 12 * k : offset + 14 + 12 * k]
            found, kind = struct.unpack(order + "HH", entry[:4])
            if found == tag and kind in (3, 4):  # SHORT or LONG, in the first bytes of the value field
                return struct.unpack(order + ("H" if kind == 3 else "I"), entry[8 : 10 if kind == 3 else 12])[0]
    except (struct.error, TypeError):  # TypeError: no byte order
        return None
    return None
