"""What a file is, from its first bytes: the one table of signatures, images and videos.

A decoder that fails says little about why; the signature tells damage (a PNG cut short:
422) from another kind of file (a PDF sent as an image: 415), a clip from a still, and a
live frame the page's canvas made (JPEG or PNG) from anything else, before any decoder runs.
A signature only says what a file claims to be; the decoders still check everything after it.
"""

from __future__ import annotations

from pathlib import Path

HEAD = 16  # bytes that tell every kind below apart

# (offset, bytes) -> kind. RIFF containers are told apart by their form type at offset 8.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF8", "GIF"),  # GIF87a, GIF89a; still or animated
    (0, b"II*\0", "TIFF"),
    (0, b"MM\0*", "TIFF"),
    (0, b"BM", "BMP"),
    (4, b"ftyp", "MP4"),  # ISO base media: MP4, MOV, M4V, 3GP (the ftyp box comes first)
    (0, b"\x1a\x45\xdf\xa3", "MKV"),  # EBML: Matroska and WebM
)
_RIFF = {b"WEBP": "WEBP", b"AVI ": "AVI"}  # WebP: still or animated

# Kinds Pillow decodes as still images (service/imaging.py).
IMAGES = frozenset({"PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"})
# Kinds that are clips whatever their content; GIF and WebP are clips only when animated.
CONTAINERS = frozenset({"MP4", "MKV", "AVI"})
# Kinds the video pipeline reads (service/video.py): a failure of one of these is damage.
VIDEOS = CONTAINERS | {"GIF", "WEBP"}
# What a browser canvas encodes (`canvas.toBlob`): the frames WS /live takes.
FRAMES = frozenset({"JPEG", "PNG"})


def sniff(head: bytes) -> str | None:
    """The kind the first bytes (`HEAD` are enough) say: "PNG", "JPEG", "GIF", "WEBP",
    "TIFF", "BMP", "MP4", "MKV", "AVI"; None for anything else."""
    if head[:4] == b"RIFF":
        return _RIFF.get(head[8:12])
    for offset, magic, kind in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return kind
    return None


def sniff_file(path: str | Path) -> str | None:
    """`sniff` of a file's first bytes (OSError if it cannot be read)."""
    with open(path, "rb") as f:
        return sniff(f.read(HEAD))
