"""The evaluation set of *real human speech*, force-aligned to phones.

Never TTS: these are recordings of people that ship inside packages already
on the machine --

* Debian ``pocketsphinx-testdata``: five LibriVox audiobook clips with
  transcripts, five "cards" utterances ("four queen of clubs"), and the
  ``goforward.raw`` / ``something.raw`` test utterances;
* ``alsa-utils``' channel prompts (``/usr/share/sounds/alsa/Front_Center.wav``
  etc.: one voice, the text is the file name).

Phones come from forced alignment with the en-US acoustic model and CMU
dictionary that ship with PyPI ``pocketsphinx``: a word-level pass
(``set_align_text``) then a phone-level pass (``set_alignment``), giving
phone boundaries on its 10 ms frame grid.  Alphabet: ARPAbet, uppercase
without stress digits (CMU convention: ``F R AH N T``); silences -> ``""``.

    python -m models.training.real_speech --list
    python -m models.training.real_speech --show alsa/Front_Center [--plot out.png]

``load_eval_set()`` caches the aligned set under ``data/eval``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio.pcm import SAMPLE_RATE, float_to_int16, int16_to_float
from models.mouth.phonemes import AlignedUtterance, PhoneSpan

FRAME_S = 0.01  # pocketsphinx's frame shift
CACHE_VERSION = 1
CACHE_FILE = "real_speech.npz"
_PSPHINX_DATA = (Path("/usr/share/pocketsphinx/test/data"), Path("/usr/share/pocketsphinx-testdata"))
_ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
_SILENCES = {"SIL", "<s>", "</s>", "<sil>", "+NSN+", "+SPN+", "+BREATH+", "+NOISE+"}


class RealSpeechError(RuntimeError):
    """The evaluation recordings or the aligner are missing or unusable."""


@dataclass(frozen=True)
class Recording:
    id: str                 # "librivox/…-0870", "alsa/Front_Center"
    path: Path
    text: str               # lowercase words as spoken
    corpus: str
    transcript_note: str = "published transcript"


# ---------------------------------------------------------------------------
# what is on this machine


def _psphinx_root() -> Path | None:
    return next((p for p in _PSPHINX_DATA if p.is_dir()), None)


def _read_transcription(path: Path) -> dict[str, str]:
    """Sphinx ``<s> words </s> (id)`` transcription lines -> {id: words}."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^()]+)\)\s*$", line)
        if m:
            out[m.group(2).strip()] = " ".join(m.group(1).split())
    return out


def discover() -> list[Recording]:
    """Every real-speech recording with a transcript found on this machine."""
    recs: list[Recording] = []
    root = _psphinx_root()
    if root is not None:
        for sub in ("librivox", "cards"):
            d = root / sub
            trans = next(iter(sorted(d.glob("*transcription"))), None) if d.is_dir() else None
            if trans is None:
                continue
            for file_id, words in sorted(_read_transcription(trans).items()):
                wav = d / f"{file_id}.wav"
                if wav.exists() and words:
                    recs.append(Recording(f"{sub}/{file_id}", wav, words, f"pocketsphinx-testdata/{sub}"))
        if (root / "goforward.raw").exists():
            recs.append(Recording("psphinx/goforward", root / "goforward.raw", "go forward ten meters",
                                  "pocketsphinx-testdata"))
        if (root / "something.raw").exists():
            # No transcript ships with it; this is what the recogniser hears and
            # what pocketsphinx's own tests expect, and it aligns cleanly.
            recs.append(Recording("psphinx/something", root / "something.raw", "go somewhere and do something",
                                  "pocketsphinx-testdata", "recogniser output, checked by alignment"))
    if _ALSA_SOUNDS.is_dir():
        for wav in sorted(_ALSA_SOUNDS.glob("*.wav")):
            if wav.stem.lower() == "noise":
                continue  # pink noise, not a voice
            recs.append(Recording(f"alsa/{wav.stem}", wav, wav.stem.replace("_", " ").lower(), "alsa-utils"))
    return recs


def read_audio(rec: Recording) -> np.ndarray:
    if rec.path.suffix == ".raw":  # sphinx test convention: 16 kHz mono s16le, no header
        return (int16_to_float(np.fromfile(rec.path, dtype="<i2")))
    from models.audio.audio_io import load_audio

    return load_audio(rec.path)


# ---------------------------------------------------------------------------
# forced alignment


class Aligner:
    """pocketsphinx en-US forced aligner (word pass, then phone pass)."""

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise RealSpeechError("forced alignment needs the PyPI package pocketsphinx") from e
        self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def missing_words(self, text: str) -> list[str]:
        return [w for w in text.split() if self.decoder.lookup_word(w) is None]

    def align(self, audio16k: np.ndarray, text: str) -> list[PhoneSpan]:
        """Phone spans covering the audio (silences as "")."""
        words = normalise_text(text)
        missing = self.missing_words(words)
        if missing:
            raise RealSpeechError(f"words not in the pronouncing dictionary: {', '.join(missing)}")
        pcm = float_to_int16(audio16k).astype("<i2").tobytes()
        d = self.decoder
        try:
            d.set_align_text(words)
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            d.set_alignment()
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            alignment = d.get_alignment()
        except RuntimeError as e:
            raise RealSpeechError(f"alignment failed for {words!r}: {e}") from e
        if alignment is None:
            raise RealSpeechError(f"alignment failed for {words!r}")
        duration = len(audio16k) / SAMPLE_RATE
        spans: list[PhoneSpan] = []
        for word in alignment:
            for ph in word:
                start = ph.start * FRAME_S
                end = min((ph.start + ph.duration) * FRAME_S, duration)
                name = "" if ph.name in _SILENCES or word.name in _SILENCES else ph.name
                if end <= start:
                    continue
                if spans and name == "" and spans[-1].phone == "":
                    spans[-1] = PhoneSpan(spans[-1].start, end, "", "arpabet")
                else:
                    spans.append(PhoneSpan(start, end, name, "arpabet"))
        return _cover(spans, duration)


def normalise_text(text: str) -> str:
    """Transcript -> the aligner's lowercase word sequence."""
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def _cover(spans: list[PhoneSpan], duration: float) -> list[PhoneSpan]:
    """Make spans start at 0 and end at the audio's end (edges are silence)."""
    out = list(spans)
    if not out or out[0].start > 0:
        out.insert(0, PhoneSpan(0.0, out[0].start if out else duration, "", "arpabet"))
    if out[-1].end < duration - 1e-6:
        if out[-1].phone == "":
            out[-1] = PhoneSpan(out[-1].start, duration, "", "arpabet")
        else:
            out.append(PhoneSpan(out[-1].end, duration, "", "arpabet"))
    return out


# ---------------------------------------------------------------------------
# the cached set


def _fingerprint(recs: list[Recording]) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    for r in recs:
        st = r.path.stat()
        h.update(f"{r.id}|{r.text}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def load_eval_set(cache_dir: Path = Path("data/eval"), progress: bool = False) -> list[AlignedUtterance]:
    """All real-speech recordings here, aligned (computed once, then cached).

    ``meta`` of each utterance: ``id``, ``corpus``, ``path``, ``transcript_note``.
    """
    from models.training.corpus import load_shard, save_shard

    recs = discover()
    if not recs:
        raise RealSpeechError(
            "no real-speech recordings found: install the Debian packages pocketsphinx-testdata and alsa-utils"
        )
    cache_dir = Path(cache_dir)
    cache = cache_dir / CACHE_FILE
    index = cache_dir / "real_speech.json"
    fp = _fingerprint(recs)
    if cache.exists() and index.exists():
        try:
            if json.loads(index.read_text()).get("fingerprint") == fp:
                return load_shard(cache)
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    aligner = Aligner()
    utts: list[AlignedUtterance] = []
    skipped: dict[str, str] = {}
    iterator = recs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(recs, desc="aligning real speech", unit="utt")
    for rec in iterator:
        try:
            audio = read_audio(rec)
            phones = aligner.align(audio, rec.text)
        except (RealSpeechError, ValueError, OSError) as e:
            skipped[rec.id] = str(e)
            continue
        utts.append(
            AlignedUtterance(
                audio=audio.astype(np.float32),
                phones=phones,
                text=rec.text,
                source=f"human/{rec.corpus}",
                language="en",
                meta={"id": rec.id, "corpus": rec.corpus, "path": str(rec.path), "transcript_note": rec.transcript_note},
            )
        )
    if not utts:
        raise RealSpeechError(f"no recording could be aligned: {skipped}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_shard(cache, utts, "eval")
    index.write_text(json.dumps({
        "fingerprint": fp,
        "utterances": len(utts),
        "minutes": round(sum(u.duration for u in utts) / 60, 3),
        "skipped": skipped,
        "ids": [u.meta["id"] for u in utts],
    }, indent=1))
    return load_shard(cache)


# ---------------------------------------------------------------------------
# looking at it


def energy_report(utt: AlignedUtterance) -> str:
    """One line per phone: times, symbol, and a bar of its RMS level in dB."""
    a = utt.audio.astype(np.float64)
    peak = np.sqrt(np.mean(a**2)) + 1e-9
    lines = []
    for p in utt.phones:
        seg = a[int(p.start * SAMPLE_RATE) : int(p.end * SAMPLE_RATE)]
        db = 10 * np.log10(np.mean(seg**2) / peak**2 + 1e-10) if len(seg) else -100.0
        bar = "#" * max(0, int(round((db + 40) / 2)))
        lines.append(f"{p.start:6.2f}-{p.end:5.2f}  {p.phone or '.':4s} {db:6.1f} dB  {bar}")
    return "\n".join(lines)


def plot(utt: AlignedUtterance, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = utt.audio
    t = np.arange(len(a)) / SAMPLE_RATE
    fig, ax = plt.subplots(figsize=(max(8, utt.duration * 4), 3))
    ax.plot(t, a, lw=0.4, color="0.3")
    env = np.sqrt(np.convolve(a.astype(np.float64) ** 2, np.ones(320) / 320, "same"))
    ax.plot(t, env, lw=1.0, color="tab:orange")
    for p in utt.phones:
        ax.axvline(p.start, color="tab:blue", lw=0.5, alpha=0.6)
        ax.text((p.start + p.end) / 2, 0.95 * np.abs(a).max(), p.phone or "·", ha="center", fontsize=8)
    ax.set_xlim(0, utt.duration)
    ax.set_xlabel("seconds")
    ax.set_title(f"{utt.meta.get('id', utt.source)}: {utt.text}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.training.real_speech", description="Real-speech evaluation set.")
    ap.add_argument("--list", action="store_true", help="list the aligned recordings")
    ap.add_argument("--show", metavar="ID", help="print one recording's phones against its energy")
    ap.add_argument("--plot", metavar="PNG", help="with --show: also draw waveform + phone boundaries")
    ap.add_argument("--cache", default="data/eval")
    args = ap.parse_args(argv)
    try:
        utts = load_eval_set(Path(args.cache), progress=True)
    except RealSpeechError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.show:
        match = [u for u in utts if u.meta["id"] == args.show]
        if not match:
            print(f"error: no recording {args.show!r}; see --list", file=sys.stderr)
            return 2
        u = match[0]
        print(f"{u.meta['id']}  {u.duration:.2f} s  {u.text!r}")
        print(energy_report(u))
        if args.plot:
            plot(u, Path(args.plot))
            print(f"plot -> {args.plot}")
        return 0
    total = sum(u.duration for u in utts)
    for u in utts:
        n = sum(1 for p in u.phones if p.phone)
        print(f"{u.meta['id']:48s} {u.duration:5.2f} s {n:3d} phones  {u.text}")
    print(f"{len(utts)} recordings, {total / 60:.2f} min of real speech")
    return 0


if __name__ == "__main__":
    sys.exit(main())
