"""An image's width and height, read from its header without decoding it.

The decompression-bomb cap must hold however the process imported OpenCV:
OpenCV reads its own cap (OPENCV_IO_MAX_IMAGE_PIXELS) once, when cv2 is first
imported, so a caller that imported cv2 before `batch.decode` would get its
1-gigapixel default. Reading the size here first makes the cap ours.

Every format `digits classify` accepts is covered: PNG, JPEG, GIF, BMP, TIFF,
WebP and PNM. `None` means the bytes are none of them.
"""

import struct

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header, or None when the format is not recognised or the header is cut."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"\xff\xd8":
            return _jpeg(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)  # a negative height means top-down rows
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
            return _pnm(data)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _tiff(data: bytes) -> tuple[int, int] | None:
    # The first image file directory (the page OpenCV decodes): tags 256 (width) and 257 (height).
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[offset : offset + 2])[0]
    size: dict[int, int] = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            # SHORT (3) or LONG (4), stored in the first bytes of the value field.
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8 : 10 if kind == 3 else 12])[0]
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
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


def _pnm(data: bytes) -> tuple[int, int] | None:
    # "P5 <w> <h> ..." with whitespace and # comments between the fields.
    fields: list[int] = []
    text = data[2:256]
    i = 0
    while len(fields) < 2 and i < len(text):
        c = text[i : i + 1]
        if c == b"#":
            i = text.find(b"\n", i)
            if i < 0:
                return None
        elif c.isdigit():
            j = i
            while j < len(text) and text[j : j + 1].isdigit():
                j += 1
            fields.append(int(text[i:j]))
            i = j
            continue
        elif not c.isspace():
            return None
        i += 1
    return (fields[0], fields[1]) if len(fields) == 2 else None
