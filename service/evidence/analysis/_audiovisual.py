"""Video and audio: container metadata, streams, and PDQ hashes of keyframes (PyAV/FFmpeg)."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.stream import Stream
from av.video.stream import VideoStream

from service.evidence.analysis._findings import Findings, integer, number, text
from service.evidence.analysis._media_types import DEMUXERS
from service.evidence.analysis.pdq import HASHING_SIZE, hash_rgb
from service.evidence.analysis.result import JSONValue

# Frames larger than this are not decoded (8K UHD is 33 megapixels).
MAX_FRAME_PIXELS = 40_000_000
# How many keyframes are hashed, spread evenly over the video.
MAX_KEYFRAMES = 16
MAX_STREAMS = 16

_TEXT_TAGS = {  # container tag → key; QuickTime keys are what phones write
    "com.apple.quicktime.make": "make",
    "com.apple.quicktime.model": "model",
    "com.apple.quicktime.software": "software",
    "encoder": "encoder",
}
# ISO 6709 as phones write it: +DD.DDDD+DDD.DDDD(+AAA.AAA)/
_ISO6709 = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?(?:CRS.*)?/?")


def analyse_audiovisual(path: Path, media_type: str, findings: Findings) -> None:
    """Read container and stream metadata into `findings`, then hash keyframes of a video."""
    with av.open(
        str(path),
        format=DEMUXERS[media_type],
        options={"protocol_whitelist": "file"},
        metadata_errors="replace",
    ) as container:
        video = container.streams.video[0] if container.streams.video else None
        findings.put("kind", "video" if video is not None else "audio")
        findings.put("container", text(container.format.name))
        if container.duration is not None:
            findings.put("duration_s", number(container.duration / av.time_base))
        findings.put("bit_rate", integer(container.bit_rate) or None)
        _read_tags(dict(container.metadata), findings)
        findings.put("streams", [_stream(s) for s in list(container.streams)[:MAX_STREAMS]])
        if video is not None:
            _hash_keyframes(container, video, findings)


def _read_tags(tags: dict[str, str], findings: Findings) -> None:
    findings.put("created_at", text(tags.get("creation_time")))
    for tag, key in _TEXT_TAGS.items():
        findings.put(key, text(tags.get(tag)))
    location = text(tags.get("com.apple.quicktime.location.ISO6709") or tags.get("location"))
    findings.put("gps", _iso6709(location))


def _iso6709(location: str | None) -> dict[str, JSONValue] | None:
    match = _ISO6709.fullmatch(location) if location is not None else None
    if match is None:
        return None
    latitude, longitude = float(match[1]), float(match[2])
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    found: dict[str, JSONValue] = {"latitude": latitude, "longitude": longitude}
    if match[3] is not None:
        found["altitude"] = float(match[3])
    return found


def _stream(stream: Stream) -> dict[str, JSONValue]:
    context = stream.codec_context
    described: dict[str, JSONValue] = {"type": stream.type, "codec": text(context.name)}
    if stream.duration is not None and stream.time_base is not None:
        described["duration_s"] = number(stream.duration * stream.time_base)
    if isinstance(stream, VideoStream):
        described["width"] = stream.codec_context.width
        described["height"] = stream.codec_context.height
        if stream.average_rate is not None:
            described["frame_rate"] = number(stream.average_rate)
    elif stream.type == "audio":
        described["sample_rate"] = integer(getattr(context, "sample_rate", None))
        described["channels"] = integer(getattr(context, "channels", None))
    language = text(stream.metadata.get("language"))
    if language is not None and language != "und":
        described["language"] = language
    return {k: v for k, v in described.items() if v is not None}


def _hash_keyframes(container: InputContainer, video: VideoStream, findings: Findings) -> None:
    """PDQ of up to MAX_KEYFRAMES keyframes, found by seeking to evenly spaced times."""
    width, height = video.codec_context.width, video.codec_context.height
    if width * height > MAX_FRAME_PIXELS:
        raise ValueError(f"video frames of {width}×{height} are too large to decode")
    video.codec_context.skip_frame = "NONKEY"  # decode keyframes only
    # One thread: each of FFmpeg's decoding threads would take its own stack and buffers.
    video.codec_context.thread_count = 1
    duration = container.duration / av.time_base if container.duration else 0.0
    start = video.start_time or 0  # MPEG-TS and edited files do not start at zero
    seen: set[int | None] = set()
    for i in range(MAX_KEYFRAMES):
        if duration > 0 and video.time_base is not None:
            offset = int(duration * i / MAX_KEYFRAMES / video.time_base)
            container.seek(start + offset, stream=video)
        frame = next(container.decode(video), None)
        if frame is None or frame.pts in seen:
            continue  # short videos have fewer keyframes than seek targets
        seen.add(frame.pts)
        large = frame.width > HASHING_SIZE or frame.height > HASHING_SIZE
        # As for photos: larger frames are hashed at Meta's reference 512×512.
        width, height = (HASHING_SIZE, HASHING_SIZE) if large else (frame.width, frame.height)
        pixels = frame.to_ndarray(width=width, height=height, format="rgb24", threads=1)
        time = number(frame.time)
        findings.perceptual.append(hash_rgb(np.asarray(pixels), frame_time_s=time))
        if duration <= 0:
            break  # cannot seek without a duration: the first keyframe only
