"""Video and audio through the sandbox: metadata, keyframe hashes, hostile files."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from service.evidence.analysis import analyse_file, best_match_distance
from tests.analysis.media import NEAR_DUPLICATE_THRESHOLD, scene

SECONDS, RATE, KEYFRAME_EVERY = 2, 10, 5


def _write_video(
    path: Path, *, container: str, codec: str, size: tuple[int, int], tags: dict[str, str]
) -> None:
    """2 s of a camera panning across a scene, a keyframe every 0.5 s."""
    width, height = size
    panorama = np.asarray(scene(1, (400, 240)).resize((width * 5 // 4, height)))
    with av.open(str(path), "w", format=container) as output:
        output.metadata.update(tags)
        stream = output.add_stream(codec, rate=RATE, options={"g": str(KEYFRAME_EVERY)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        step = (panorama.shape[1] - width) // (SECONDS * RATE)
        for i in range(SECONDS * RATE):
            window = np.ascontiguousarray(panorama[:, i * step : i * step + width])
            output.mux(stream.encode(av.VideoFrame.from_ndarray(window, format="rgb24")))
        output.mux(stream.encode(None))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    tags = {"creation_time": "2020-06-10T09:30:00.000000Z", "location": "+32.4335+013.6345/"}
    _write_video(path, container="mp4", codec="h264", size=(320, 240), tags=tags)
    return path


def test_video_metadata_and_keyframe_hashes(video: Path) -> None:
    analysis = analyse_file(video, "video/mp4")
    assert analysis.error is None
    extracted = analysis.extracted
    assert extracted["kind"] == "video"
    assert extracted["duration_s"] == pytest.approx(SECONDS, abs=0.1)
    assert extracted["created_at"] == "2020-06-10T09:30:00.000000Z"
    assert extracted["gps"] == {"latitude": 32.4335, "longitude": 13.6345}
    [stream] = extracted["streams"]  # type: ignore[misc]
    assert stream["type"] == "video" and stream["codec"] == "h264"
    assert (stream["width"], stream["height"], stream["frame_rate"]) == (320, 240, RATE)
    times = [h.frame_time_s for h in analysis.perceptual]
    assert times == [0.0, 0.5, 1.0, 1.5]  # every keyframe of a short video, once each


def test_reencoded_smaller_video_is_a_near_duplicate(video: Path, tmp_path: Path) -> None:
    copy = tmp_path / "forwarded.webm"
    _write_video(copy, container="webm", codec="libvpx-vp9", size=(160, 120), tags={})
    original, forwarded = analyse_file(video, "video/mp4"), analyse_file(copy, "video/webm")
    assert forwarded.extracted["streams"][0]["codec"] == "vp9"  # type: ignore[index,call-overload]
    distance = best_match_distance(original.perceptual, forwarded.perceptual)
    assert distance is not None and distance <= NEAR_DUPLICATE_THRESHOLD


def test_audio_duration_and_codec(tmp_path: Path) -> None:
    path = tmp_path / "witness.wav"
    with wave.open(str(path), "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(8000)
        recording.writeframes(b"\x00\x01" * 12_000)
    analysis = analyse_file(path, "audio/wave")
    assert analysis.error is None and analysis.perceptual == ()
    assert analysis.extracted == {
        "kind": "audio",
        "container": "wav",
        "duration_s": 1.5,
        "bit_rate": pytest.approx(128_000, rel=0.01),  # with the header
        "streams": [
            {
                "type": "audio",
                "codec": "pcm_s16le",
                "duration_s": 1.5,
                "sample_rate": 8000,
                "channels": 1,
            }
        ],
    }


def test_video_with_a_corrupt_header(video: Path) -> None:
    data = bytearray(video.read_bytes())
    data[:64] = os.urandom(64)
    video.write_bytes(bytes(data))
    analysis = analyse_file(video, "video/mp4")
    assert analysis.error == _FFMPEG_INVALID_DATA
    assert analysis.perceptual == ()


def test_random_bytes_labelled_video(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(os.urandom(100_000))
    assert analyse_file(path, "video/mp4").error == _FFMPEG_INVALID_DATA


# FFmpeg's AVERROR_INVALIDDATA as PyAV raises it: the decoder ran and refused the file
# (a decoder that failed to load, or any other error, reads differently).
_FFMPEG_INVALID_DATA = (
    "InvalidDataError: [Errno 1094995529] Invalid data found when processing input: 'the file'"
)
