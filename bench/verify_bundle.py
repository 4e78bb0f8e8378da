"""Benchmark: `locker verify` (verify_path) against sha256sum over the same payload bytes.

Builds a bundle of about 2 GiB (a few large evidence files, stored as the exporter
stores them), writes the same payload files beside it, warms the page cache, then times
the verifier (which reads every file once and computes SHA-256 and SHA-512) against GNU
sha256sum, sha512sum and `openssl dgst -sha256` over the extracted files.

    .venv/bin/python bench/verify_bundle.py [--gib 2] [--files 4] [--dir /tmp/locker-bench]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from service.client.verifier import verify_path
from service.core import bagit, bundle, merkle
from service.core.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from service.core.digests import ContentDigester
from service.core.entry import encode_entry

_CHUNK = 8 * 1024 * 1024
ORIGIN = "bench.example/custody"


def _content(size: int) -> Iterator[bytes]:
    """`size` bytes of incompressible content, in chunks."""
    block = os.urandom(_CHUNK)
    written = 0
    while written < size:
        chunk = block[: min(_CHUNK, size - written)]
        yield written.to_bytes(8, "big") + chunk[8:]
        written += len(chunk)


def build(directory: Path, *, total: int, files: int) -> tuple[Path, str, list[Path]]:
    """The bundle zip, its verifier key and the payload files written beside it."""
    signer, top = NoteSigner.generate(ORIGIN), f"export-{uuid.uuid4()}"
    leaves: list[bytes] = []
    items: list[dict[str, object]] = []
    payload: list[tuple[str, str, str, int]] = []
    extracted = directory / "extracted"
    zip_path = directory / "bundle.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for number in range(files):
            evidence_id = str(uuid.uuid4())
            rel = f"data/evidence/{evidence_id}/video-{number}.mp4"
            (extracted / rel).parent.mkdir(parents=True, exist_ok=True)
            digester = ContentDigester()
            with (
                archive.open(f"{top}/{rel}", "w", force_zip64=True) as out,
                open(extracted / rel, "wb") as copy,
            ):
                for chunk in _content(total // files):
                    digester.update(chunk)
                    out.write(chunk)
                    copy.write(chunk)
            digests = digester.finish()
            payload.append((rel, digests.sha256.hex, digests.sha512.hex, digests.size))
            fields = {"index": len(leaves), "time": "2025-03-01T00:00:00Z", "organisation": "o"}
            fields |= {"actor": "user:1", "action": "evidence.ingested"}
            fields |= {"subject": f"evidence:{evidence_id}", "sha256": digests.sha256.hex}
            leaves.append(encode_entry(fields))
            items.append(
                {
                    "id": evidence_id,
                    "sha256": digests.sha256.hex,
                    "sha512": digests.sha512.hex,
                    "size": digests.size,
                    "ingest_index": len(leaves) - 1,
                    "path": rel,
                }
            )
            record = f"data/records/evidence/{evidence_id}.json"
            data = bundle.items_json([items[-1]], [])
            archive.writestr(f"{top}/{record}", data)
            payload.append(
                (
                    record,
                    hashlib.sha256(data).hexdigest(),
                    hashlib.sha512(data).hexdigest(),
                    len(data),
                )
            )
        _write_tags(archive, top, signer, leaves, items, payload)
    evidence = [extracted / p for p, *_ in payload if p.startswith("data/evidence/")]
    return zip_path, signer.verifier().to_text(), evidence


def _write_tags(  # noqa: PLR0913 (the bag's parts, written in one pass)
    archive: zipfile.ZipFile,
    top: str,
    signer: NoteSigner,
    leaves: list[bytes],
    items: list[dict[str, object]],
    payload: list[tuple[str, str, str, int]],
) -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    checkpoint = Checkpoint(
        origin=ORIGIN, size=len(leaves), root_hash=merkle.root_from_leaf_hashes(hashes)
    )
    proofs = {
        i: [
            merkle.root_from_leaf_hashes(hashes[s:e])
            for s, e in merkle.inclusion_ranges(i, len(hashes))
        ]
        for i in range(len(leaves))
    }
    oxum = f"{sum(p[3] for p in payload)}.{len(payload)}"
    info = {"Source-Organization": "o", "Bagging-Date": "2025-03-02", "External-Identifier": top}
    info |= {"Payload-Oxum": oxum, "Bag-Software-Agent": "bench", "Locker-Log-Origin": ORIGIN}
    tags = {
        "bagit.txt": bagit.BAGIT_TXT.encode(),
        "bag-info.txt": bagit.bag_info_text(info).encode(),
        "manifest-sha256.txt": bagit.manifest_text((p, s) for p, s, _, _ in payload).encode(),
        "manifest-sha512.txt": bagit.manifest_text((p, s) for p, _, s, _ in payload).encode(),
        "custody/checkpoint.txt": sign_checkpoint(checkpoint, signer).encode(),
        "custody/verifier-key.txt": (signer.verifier().to_text() + "\n").encode(),
        "custody/proofs.json": bundle.proofs_json(len(leaves), proofs),
        "custody/items.json": bundle.items_json(items, []),
    }
    tags |= {bundle.entry_path(i): leaf for i, leaf in enumerate(leaves)}
    for rel, data in tags.items():
        archive.writestr(f"{top}/{rel}", data)
    listing = ((rel, hashlib.sha256(data).hexdigest()) for rel, data in tags.items())
    archive.writestr(f"{top}/tagmanifest-sha256.txt", bagit.manifest_text(listing))


def _best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _command(argv: list[str]) -> Callable[[], object]:
    return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    """Build, warm, time and print GiB/s and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/locker-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    total = int(args.gib * 2**30)
    try:
        zip_path, key, files = build(args.dir, total=total, files=args.files)
        names = [str(f) for f in files]
        subprocess.run(["cat", str(zip_path), *names], check=True, stdout=subprocess.DEVNULL)
        verdict = verify_path(zip_path, key)
        assert verdict.ok, verdict.findings
        gib = sum(f.stat().st_size for f in files) / 2**30
        timings = {
            "locker verify (sha256+sha512, one pass)": _best(
                args.repeat, lambda: verify_path(zip_path, key)
            ),
            "sha256sum": _best(args.repeat, _command(["sha256sum", *names])),
            "sha512sum": _best(args.repeat, _command(["sha512sum", *names])),
            "openssl dgst -sha256": _best(
                args.repeat, _command(["openssl", "dgst", "-sha256", *names])
            ),
        }
        cpus = os.cpu_count()
        print(f"payload: {gib:.2f} GiB in {len(files)} files; best of {args.repeat}; {cpus} cpus")
        for name, seconds in timings.items():
            print(f"  {name:42s} {seconds:7.2f} s  {gib / seconds:6.2f} GiB/s")
        verify = timings["locker verify (sha256+sha512, one pass)"]
        for name in ("sha256sum", "openssl dgst -sha256"):
            print(f"verify speed / {name} speed: {timings[name] / verify:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
