"""Which extractor, and which decoder inside it, may read each sniffed media type."""

from __future__ import annotations

# Only the decoder for the sniffed type may touch the bytes.
PILLOW_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
}

# The only FFmpeg demuxer allowed for each sniffed type. Letting FFmpeg probe freely would
# expose demuxers (HLS, concat) that follow references to other files or to the network.
DEMUXERS = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/3gpp": "mov",
    "audio/mp4": "mp4",
    "audio/x-m4a": "mp4",
    "video/webm": "matroska",
    "video/x-matroska": "matroska",
    "audio/webm": "matroska",
    "video/x-msvideo": "avi",
    "video/mpeg": "mpeg",
    "video/mp2t": "mpegts",
    "audio/mpeg": "mp3",
    "audio/wave": "wav",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/ogg": "ogg",
    "video/ogg": "ogg",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/aac": "aac",
}
_OFFICE_PREFIX = "application/vnd.openxmlformats-officedocument."


def extractor_kind(media_type: str) -> str | None:
    """Which extractor reads `media_type` ("image", "pdf", "office", "audiovisual"), if any."""
    if media_type in PILLOW_FORMATS:
        return "image"
    if media_type == "application/pdf":
        return "pdf"
    if media_type.startswith(_OFFICE_PREFIX) or media_type == "application/zip":
        return "office"
    if media_type in DEMUXERS:
        return "audiovisual"
    return None


def analysable(media_type: str) -> bool:
    """Whether some extractor reads `media_type` (its parameters and case ignored)."""
    return extractor_kind(media_type.split(";", 1)[0].strip().lower()) is not None
