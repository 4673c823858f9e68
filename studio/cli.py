"""``python run_live.py batch --audio FILE VIDEO... --out DIR [--zip]``

The same queue, worker pool and pipeline as the web studio, run in a private
folder (so a server using the same data directory is never disturbed) and
sharing its avatar cache.  Exit status: 0 when every video rendered, 1 when any
failed, 2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from studio.config import StudioConfig, StudioPaths, usable_cores
from studio.render_backend import BackendFactory
from studio.jobs import BatchProgress, ItemStatus, StudioError
from studio.storage import unique_name
from studio.zip_export import ZipEntry, iter_zip

DEFAULT_ZIP_NAME = "lipstream-batch.zip"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_live.py batch",
        description="Make every VIDEO (or photo) speak the same audio; one MP4 per video in --out.")
    p.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="avatar videos or photos")
    p.add_argument("--audio", required=True, type=Path, help="the speech every video will say")
    p.add_argument("--out", required=True, type=Path, help="folder for the results (created if needed)")
    p.add_argument("--zip", nargs="?", const=DEFAULT_ZIP_NAME, default=None, metavar="NAME",
                   help=f"also write all results as one ZIP in --out (default name {DEFAULT_ZIP_NAME})")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--workers", type=int, default=0, help="render processes (default: one per core)")
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="where the avatar cache lives (shared with the server)")
    p.add_argument("--checkpoint", type=Path, default=None, help="mouth model weights")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="render on the Ray cluster at ADDRESS (its head's host:port, or 'auto'); "
                        "this machine must be one of its nodes (pip install 'lipstream[ray]')")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write a summary: per item its status, output file, error and Ray node")
    return p


def batch_main(argv: list[str], ray_backend: Callable[[str], BackendFactory] | None = None) -> int:
    """``ray_backend``: connects to a cluster and returns the studio's backend factory
    (given by run_live.py, which composes the packages; the studio never imports Ray)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # argparse already printed the message
        return int(exc.code or 0) and 2
    problems = _check_inputs(args)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    # No more render processes than videos: each one costs a second or two to start.
    workers = args.workers or min(len(args.videos), usable_cores())
    backend = None
    if args.ray is not None:
        if ray_backend is None:
            print("error: --ray is not available here", file=sys.stderr)
            return 2
        try:
            backend = ray_backend(args.ray)
        except (ValueError, ImportError, RuntimeError, ConnectionError) as exc:   # no Ray, no cluster there
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        config = StudioConfig(workers=workers, fps=args.fps, checkpoint=args.checkpoint, render_backend=backend)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, config))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _check_inputs(args: argparse.Namespace) -> list[str]:
    problems = []
    for path in [args.audio, *args.videos]:
        if not path.is_file():
            problems.append(f"{path}: no such file")
        elif not os.access(path, os.R_OK):
            problems.append(f"{path}: not readable")
    if args.out.exists() and not args.out.is_dir():
        problems.append(f"--out {args.out} exists and is not a folder")
    if args.zip is not None and ("/" in args.zip or args.zip in ("", ".", "..")):
        problems.append("--zip takes a file name (it is written inside --out)")
    if args.json is not None and args.json.is_dir():
        problems.append(f"--json {args.json} is a folder")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        problems.append(f"--checkpoint {args.checkpoint}: no such file")
    return problems


async def _run(args: argparse.Namespace, config: StudioConfig) -> int:
    import multiprocessing

    from tqdm import tqdm

    from studio.pipeline import PRELOAD
    from studio.service import Studio

    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=".batch-", dir=args.data_dir))
    studio = Studio(args.data_dir, config, paths=StudioPaths(args.data_dir.resolve(), private.name))
    try:
        await studio.start()
        batch = studio.create_batch(f"cli: {args.audio.name}", args.fps)
        # Results never take the name of a file already in --out (a source video, an earlier run).
        studio.add_local_files(batch.id, args.audio, list(args.videos),
                               taken={p.name for p in args.out.iterdir()})
        studio.start_batch(batch.id)
        n = len(args.videos)
        where = "Ray cluster CPU(s)" if studio.pool.backend is not None else "render process(es)"
        print(f"{n} video(s) x {args.audio.name} on {studio.pool.size} {where}", file=sys.stderr)
        reported: set[str] = set()
        with tqdm(total=n, unit="video", desc="batch", file=sys.stderr,
                  bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}]{postfix}") as bar:
            while True:
                snap = studio.progress(batch.id)
                _report_items(snap, reported, args.out, bar)
                bar.n = round(snap.fraction * n, 2)
                bar.set_postfix_str(", ".join(snap.to_json()["current_names"])[:40], refresh=False)
                bar.refresh()
                if snap.batch.status.terminal and not snap.current:
                    break
                await asyncio.sleep(0.3)
        if snap.batch.error:
            print(f"batch: {snap.batch.error}", file=sys.stderr)
        results = studio.db.list_results(10_000, 0, batch.id)
        written = _deliver(studio, results, args.out)
        if args.json is not None:
            _write_summary(args.json, summary(studio, snap, results, written))
        if args.zip and written:
            zip_path = args.out / args.zip
            _write_zip([ZipEntry(p.name, p) for p in written], zip_path)
            print(f"zip: {zip_path}", file=sys.stderr)
        shutil.copyfile(studio.paths.log, args.out / "lipstream-batch.log")
        failed = sum(v.item.status is not ItemStatus.DONE for v in snap.items)
        print(f"{len(written)} done, {failed} failed -> {args.out}", file=sys.stderr)
        return 1 if failed else 0
    finally:
        await studio.stop()
        shutil.rmtree(private, ignore_errors=True)


def _report_items(snap: BatchProgress, reported: set[str], out: Path, bar) -> None:
    for view in snap.items:
        item = view.item
        if item.status.terminal and item.id not in reported:
            reported.add(item.id)
            # Per-item outcomes go to stdout (scripts read them); the bar lives on stderr.
            if item.status is ItemStatus.DONE:
                bar.write(f"ok      {view.video_name} -> {out / item.out_name}", file=sys.stdout)
            else:
                bar.write(f"{item.status.value:7s} {view.video_name}: {item.error or item.status.value}",
                          file=sys.stdout)


def _deliver(studio, results, out: Path) -> list[Path]:
    """Move finished results from the private folder into ``out`` (atomically per file),
    never over an existing file."""
    written = []
    for r in results:
        src = studio.result_file(r)
        dst = out / unique_name(r.filename, {p.name for p in out.iterdir()})
        tmp = dst.with_name(f".{dst.name}.part-{os.getpid()}")
        shutil.move(str(src), tmp)    # rename when on the same disk, copy otherwise
        os.replace(tmp, dst)
        written.append(dst)
    return written


def summary(studio, snap: BatchProgress, results, written: list[Path]) -> dict:
    """The ``--json`` document: the batch and, per item in list order, its outcome."""
    delivered = {r.item_id: str(p.resolve()) for r, p in zip(results, written)}
    backend = studio.pool.backend
    return {
        "batch": snap.batch.id,
        "status": snap.batch.status.value,
        "error": snap.batch.error,
        "backend": backend.name if backend is not None else "local",
        "items": [{"video": v.video_name, "status": v.item.status.value, "output": delivered.get(v.item.id),
                   "error": v.item.error, "node_id": backend.node_of(v.item.id) if backend is not None else None}
                  for v in snap.items],
    }


def _write_summary(path: Path, document: dict) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)


def _write_zip(entries: list[ZipEntry], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for chunk in iter_zip(entries):
                f.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
