"""The audio-to-mouth network: one 300 ms log-mel window in, one mouth shape out.

Read top to bottom: the feature fingerprint a checkpoint is tied to, the network,
the checkpoint format, and the predictor the live engine calls for every frame.

The input is ``models.mouth.feature_window.window_for(mel, t)``: 80 mel bands × 24 frames
(240 ms before the moment ``t`` and 60 ms after it).  Mel bands are the conv
channels and time is the conv axis: two 1-D convolutions pick up local
spectro-temporal patterns (formant glides, bursts, nasal murmurs), then the time
axis is flattened (not pooled) because *where* in the window a sound happens
matters — the frame at ``t`` is the one being described — and an MLP decides.

Outputs: 15 viseme logits and three shape values with their ranges built in:
openness in (-0.1, 1) before clamping to [0, 1] — the margin below zero lets the
network say "closed" with certainty, which then renders as exactly 0 — width in
(-1, 1) and rounding in (0, 1).

At batch 1 the cost is per-operation overhead, not arithmetic, so the network
has few layers and the predictor runs it as one frozen graph (~0.1-0.2 ms per
frame on one core; see ``bench/mouth_model.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.audio import mel_stream
from models.mouth.feature_window import LOOKAHEAD_S, WINDOW_FRAMES
from models.mouth.mouth_shape import N_VISEMES, MouthShape

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "mouth_net.pt"
CHECKPOINT_FORMAT = "lipstream-mouthnet"
CHECKPOINT_VERSION = 1
OPEN_MARGIN = 0.1  # openness head spans (-OPEN_MARGIN, 1); below 0 means firmly closed


class MouthModelError(RuntimeError):
    """The checkpoint is missing, corrupt, or was trained on different features."""


# --------------------------------------------------------------------------- features
def feature_params() -> dict[str, float | int]:
    """Everything about the front-end a trained network silently depends on."""
    m = mel_stream
    return {
        "sample_rate": m.SAMPLE_RATE, "n_fft": m.N_FFT, "hop": m.HOP, "win": m.WIN,
        "n_mels": m.N_MELS, "fmin": m.FMIN, "fmax": m.FMAX, "preemphasis": m.PREEMPHASIS,
        "ref_level_db": m.REF_LEVEL_DB, "min_level_db": m.MIN_LEVEL_DB,
        "max_abs_value": m.MAX_ABS_VALUE, "lookahead_s": LOOKAHEAD_S, "window_frames": WINDOW_FRAMES,
    }


def feature_hash(params: dict | None = None) -> str:
    blob = json.dumps(params or feature_params(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def feature_probe() -> np.ndarray:
    """Log-mel of a fixed chirp: catches a changed front-end *implementation*,
    which the parameter hash alone cannot."""
    t = np.arange(int(0.25 * mel_stream.SAMPLE_RATE)) / mel_stream.SAMPLE_RATE
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + 6000 * t**2)) * np.hanning(len(t))
    return mel_stream.log_mel(chirp.astype(np.float32))


# --------------------------------------------------------------------------- network
@dataclass(frozen=True)
class MouthNetConfig:
    n_mels: int = 80
    frames: int = WINDOW_FRAMES
    channels: int = 128    # first conv: local spectro-temporal patterns (formant moves, bursts)
    channels2: int = 96    # second conv halves the time axis
    hidden: int = 192
    dropout: float = 0.1


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(
            nn.Conv1d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(),
        )


class MouthNet(nn.Module):
    """Two convolutions and an MLP.  Deliberately few layers: at batch 1 the cost
    is per-operation overhead, not arithmetic, and ReLU (unlike GELU) folds into
    a frozen graph for free."""

    def __init__(self, config: MouthNetConfig = MouthNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.convs = nn.Sequential(
            ConvBlock(config.n_mels, config.channels, stride=1),
            ConvBlock(config.channels, config.channels2, stride=2),
        )
        t_out = math.ceil(config.frames / 2)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(config.channels2 * t_out, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, N_VISEMES + 3),
        )

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 80, 24) log-mel in [-4, 4] → viseme logits (B, 15), raw shape (B, 3).

        One sigmoid maps all three shape outputs into their ranges (tanh(x) is an
        affine sigmoid of 2x, the network learns the 2x): openness in (-0.1, 1),
        width in (-1, 1), rounding in (0, 1).  Raw openness below 0 means firmly
        closed; ``clamp_shape`` turns it into a MouthShape value of exactly 0.
        """
        out = self.head(self.convs(windows))
        logits = out[:, :N_VISEMES]
        shape = torch.addcmul(_SHAPE_LOW, torch.sigmoid(out[:, N_VISEMES:]), _SHAPE_SPAN)
        return logits, shape


_SHAPE_LOW = torch.tensor([-OPEN_MARGIN, -1.0, 0.0])
_SHAPE_SPAN = torch.tensor([1.0 + OPEN_MARGIN, 2.0, 1.0])
_SHAPE_MIN = torch.tensor([0.0, -1.0, 0.0])


def clamp_shape(raw: torch.Tensor) -> torch.Tensor:
    return torch.maximum(raw, _SHAPE_MIN)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --------------------------------------------------------------------------- checkpoint
def save_checkpoint(net: MouthNet, path: Path, meta: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": asdict(net.config),
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "feature_params": feature_params(),
        "feature_hash": feature_hash(),
        "feature_probe": torch.from_numpy(feature_probe()),
        "meta_json": json.dumps(meta or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint where the server looks


def load_checkpoint(path: Path) -> tuple[MouthNet, dict]:
    path = Path(path)
    if not path.is_file():
        raise MouthModelError(
            f"mouth model checkpoint not found: {path} — train one with "
            "`python -m models.training.train_mouth --corpus data/corpus --out checkpoints/mouth_net.pt`"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise MouthModelError(f"mouth model checkpoint {path} is unreadable: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise MouthModelError(f"{path} is not a lipstream mouth model checkpoint")
    if blob.get("version") != CHECKPOINT_VERSION:
        raise MouthModelError(f"{path} has checkpoint version {blob.get('version')}, expected {CHECKPOINT_VERSION}")
    _check_features(path, blob)
    try:
        net = MouthNet(MouthNetConfig(**blob["config"]))
        net.load_state_dict(blob["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise MouthModelError(f"{path} does not match the MouthNet architecture: {exc}") from exc
    net.eval()
    return net, json.loads(blob.get("meta_json", "{}"))


def _check_features(path: Path, blob: dict) -> None:
    if blob.get("feature_hash") != feature_hash():
        saved = blob.get("feature_params", {})
        diff = {k: (saved.get(k), v) for k, v in feature_params().items() if saved.get(k) != v}
        raise MouthModelError(
            f"{path} was trained on different audio features; (checkpoint, now): {diff}. Retrain the model."
        )
    probe = blob.get("feature_probe")
    now = feature_probe()
    if probe is None or tuple(probe.shape) != now.shape or float(np.abs(probe.numpy() - now).max()) > 0.05:
        raise MouthModelError(
            f"{path}: the log-mel front-end computes different values than when the model was trained. Retrain the model."
        )


# --------------------------------------------------------------------------- predictor
class MouthPredictor:
    """Per-frame inference for the live engine and the offline renderer."""

    def __init__(self, net: MouthNet, meta: dict | None = None) -> None:
        self.net = net.eval()
        self.meta = meta or {}
        self._run = _frozen(self.net)

    @classmethod
    def load(cls, path: Path | str | None = None, *, threads: int | None = 1) -> MouthPredictor:
        """Load a checkpoint (default ``checkpoints/mouth_net.pt``).

        ``threads=1`` (the default) pins torch's intra-op pool to one thread: at
        batch 1 more threads only add synchronisation, and several live sessions
        must not fight over the two cores.  Pass None to leave torch alone.
        """
        if threads is not None:
            torch.set_num_threads(threads)
        net, meta = load_checkpoint(Path(path) if path is not None else DEFAULT_CHECKPOINT)
        return cls(net, meta)

    def predict_arrays(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 80, 24) or (80, 24) windows → posteriors (B, 15), shapes (B, 3) float32."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        cfg = self.net.config
        if x.ndim != 3 or x.shape[1:] != (cfg.n_mels, cfg.frames):
            raise MouthModelError(f"expected windows of shape (B, {cfg.n_mels}, {cfg.frames}), got {x.shape}")
        if not np.isfinite(x).all():
            raise MouthModelError("mel windows contain NaN or infinite values")
        with torch.inference_mode():
            post, shape = self._run(torch.from_numpy(x))
        return post.numpy(), shape.numpy()

    def predict(self, windows: np.ndarray) -> list[MouthShape]:
        post, shape = self.predict_arrays(windows)
        return [to_mouth_shape(p, s) for p, s in zip(post, shape)]


class _Inference(nn.Module):
    """Network + softmax + clamping, so that one frozen graph does all of it."""

    def __init__(self, net: MouthNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, raw = self.net(windows)
        return F.softmax(logits, dim=1), clamp_shape(raw)


def _frozen(net: MouthNet) -> nn.Module:
    """The network as a frozen TorchScript graph (BatchNorm folded into the
    convolutions): about half the per-frame time of eager mode at batch 1.
    TorchScript is deprecated in recent torch; if it ever goes, eager mode is
    the (slower, identical) fallback."""
    cfg = net.config
    inference = _Inference(net.eval()).eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            example = torch.zeros(2, cfg.n_mels, cfg.frames)
            return torch.jit.freeze(torch.jit.trace(inference, example))
    except (AttributeError, RuntimeError):
        return inference


def to_mouth_shape(posterior: np.ndarray, shape: np.ndarray) -> MouthShape:
    return MouthShape(
        openness=float(shape[0]),
        width=float(shape[1]),
        rounding=float(shape[2]),
        visemes=np.asarray(posterior, dtype=np.float32),
        speech=bool(posterior[0] < 0.5),  # index 0 is "sil"
    )
