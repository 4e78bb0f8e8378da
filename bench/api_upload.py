"""Benchmark: upload throughput through the API vs straight to S3, and server memory.

Targets (issue: core): a 256 MiB upload through the running API (S3 backend) at no
less than 0.8x the throughput of putting the same bytes with the minio client
straight to the same server; server peak RSS during a 1 GiB upload no more than
100 MiB above idle (on S3 and on the embedded default).

    .venv/bin/python bench/api_upload.py [--mib 256] [--rss-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from minio import Minio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import free_port  # noqa: E402
from tests.seaweed import SeaweedServer, run_seaweed  # noqa: E402

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BOUNDARY = "benchboundary7d1f"
CHUNK = 1024 * 1024


def _make_file(path: Path, mib: int) -> None:
    block = os.urandom(CHUNK)
    with path.open("wb") as handle:
        for _ in range(mib):
            handle.write(block)


def _field_digest(path: Path, salt: bytes) -> str:
    """What an investigator's client computes in the field, before uploading."""
    digest = hashlib.sha256(salt)
    with path.open("rb") as handle:
        handle.read(len(salt))
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _body(path: Path, salt: bytes, sha256: str | None) -> Iterator[bytes]:
    """Multipart framing around the file, streamed; `salt` makes the content unique."""
    if sha256 is not None:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="sha256"\r\n\r\n{sha256}\r\n'
        ).encode()
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="video.mp4"\r\n\r\n'
    ).encode()
    yield salt
    with path.open("rb") as handle:
        handle.read(len(salt))
        while chunk := handle.read(CHUNK):
            yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


class Server:
    """The locker as a separate process, as an operator runs it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")} | env
        boot = subprocess.run(
            [
                sys.executable,
                "-m",
                "service",
                "admin",
                "bootstrap",
                "--org",
                "bench",
                "--email",
                "b@example.org",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        self.key = boot.stdout.strip().splitlines()[-1]
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(self.port)],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the locker did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def upload(self, path: Path, salt: bytes, *, field_digest: bool = False) -> float:
        sha256 = _field_digest(path, salt) if field_digest else None
        started = time.perf_counter()
        response = httpx.post(
            f"{self.url}/v1/evidence",
            content=_body(path, salt, sha256),
            timeout=600,
            headers={
                "Authorization": f"Bearer {self.key}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 201, response.text
        return elapsed

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _peak_rss_during(server: Server, path: Path) -> tuple[float, float]:
    server.upload(path.parent / "warmup.bin", uuid.uuid4().bytes)
    idle = server.rss_mib()
    peak, done = idle, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss_mib())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        server.upload(path, uuid.uuid4().bytes)
    finally:
        done.set()
        sampler.join()
    return idle, peak


@contextmanager
def _running(env: dict[str, str]) -> Iterator[Server]:
    """A locker server that is stopped however the benchmark ends."""
    server = Server(env)
    try:
        yield server
    finally:
        server.stop()


def _s3_env(s3: SeaweedServer, database_url: str, data: Path) -> dict[str, str]:
    return {
        "LOCKER_DATA_DIR": str(data),
        "LOCKER_DATABASE_URL": database_url,
        "LOCKER_S3_ENDPOINT": s3.endpoint,
        "LOCKER_S3_ACCESS_KEY": s3.access_key,
        "LOCKER_S3_SECRET_KEY": s3.secret_key,
        "LOCKER_S3_BUCKET": "bench-evidence",
        "LOCKER_S3_SECURE": "false",
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rss-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    name = f"bench_upload_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    results: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(dir="/tmp") as scratch_dir:
            scratch = Path(scratch_dir)
            medium, large = scratch / "medium.bin", scratch / "large.bin"
            _make_file(medium, args.mib)
            _make_file(large, args.rss_mib)
            _make_file(scratch / "warmup.bin", 1)
            with (
                run_seaweed(scratch / "s3") as s3,
                _running(_s3_env(s3, database_url, scratch / "locker")) as server,
            ):
                client = Minio(
                    s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False
                )
                client.make_bucket("bench-raw", object_lock=True)
                api_times, digest_times, raw_times = [], [], []
                for run in range(args.runs):
                    api_times.append(server.upload(medium, uuid.uuid4().bytes))
                    digest_times.append(
                        server.upload(medium, uuid.uuid4().bytes, field_digest=True)
                    )
                    started = time.perf_counter()
                    client.fput_object("bench-raw", f"raw-{run}", str(medium), part_size=16 * CHUNK)
                    raw_times.append(time.perf_counter() - started)
                results["api MiB/s"] = args.mib / statistics.median(api_times)
                results["api+field digest MiB/s"] = args.mib / statistics.median(digest_times)
                results["raw MiB/s"] = args.mib / statistics.median(raw_times)
                idle, peak = _peak_rss_during(server, large)
                results["s3: idle RSS MiB"], results["s3: peak RSS MiB"] = idle, peak
            with _running({"LOCKER_DATA_DIR": str(scratch / "embedded")}) as embedded:
                idle, peak = _peak_rss_during(embedded, large)
            results["embedded: idle RSS MiB"], results["embedded: peak RSS MiB"] = idle, peak
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    ratio = results["api MiB/s"] / results["raw MiB/s"]
    with_digest = results["api+field digest MiB/s"] / results["raw MiB/s"]
    for label, value in results.items():
        print(f"{label:26} {value:9.1f}")
    print(f"{'api / raw':26} {ratio:9.2f}   (target >= 0.80; no field digest: staged, then copied)")
    print(f"{'api+field digest / raw':26} {with_digest:9.2f}   (target >= 0.80; written in place)")
    growth = {
        k: results[f"{k}: peak RSS MiB"] - results[f"{k}: idle RSS MiB"] for k in ("s3", "embedded")
    }
    for k, v in growth.items():
        print(f"{k + ': RSS growth MiB':26} {v:9.1f}   (target <= 100)")
    ok = ratio >= 0.8 and with_digest >= 0.8 and all(v <= 100 for v in growth.values())
    print("targets:", "MET" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
