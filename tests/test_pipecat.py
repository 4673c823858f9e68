"""The pipecat service in a real pipecat pipeline, against a real lipstream server.

``integrations/pipecat`` runs in its own venv (pipecat needs protobuf >= 5,
mediapipe < 5), built from PyPI on first use and cached (testing/pipecat_env.py).
The driver (integrations/pipecat/scripts/drive_pipeline.py) runs the pipeline in
that venv: real speech as ``TTSAudioRawFrame``s at real time in, the frames
``LipstreamVideoService`` pushes out recorded at the end of the pipeline.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.avatar.avatar import load_avatar
from testing.live_measure import MouthMeter
from testing.media import speech_sample, write_wav
from testing.pipecat_env import PipecatEnvUnavailable, ensure_env, run_driver
from testing.pipecat_measure import av_lag, interruption, timeline

pytestmark = pytest.mark.timeout(900)   # the first run builds the venv from PyPI

FPS = 25.0
TTS_RATE = 24_000
AV_BOUND_S = 2.0 / FPS        # lips within two frames of the sound (strict figures: bench/)
INTERRUPT_BUDGET_S = 0.100    # lips closed within 100 ms of media time


@pytest.fixture(scope="module")
def pipecat_python():
    try:
        return ensure_env()
    except PipecatEnvUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def meter(avatar_root) -> MouthMeter:
    return MouthMeter(load_avatar("default", avatar_root))


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    """Two real utterances with a short pause, at a typical TTS rate."""
    s = np.concatenate([speech_sample("Front_Center"), np.zeros(1600, np.float32), speech_sample("Rear_Right")])
    n = int(len(s) * TTS_RATE / 16_000)
    return write_wav(tmp_path_factory.mktemp("pipecat") / "tts.wav",
                     np.interp(np.arange(n) * 16_000 / TTS_RATE, np.arange(len(s)), s), TTS_RATE)


async def test_pipeline_speaks_in_sync_and_an_interruption_closes_the_lips(
        live_server, pipecat_python, meter, speech_wav, tmp_path):
    # Turn 1 is spoken to the end; turn 2 is cut off once 0.6 s of it has come out of the
    # pipeline (an event, not a time: on a loaded machine the speech comes out later).
    run = await run_driver(pipecat_python, live_server.url, speech_wav, tmp_path / "run",
                           "--turns", "2", "--interrupt-after", "0.6")
    r = run.result
    assert not r["errors"], r["errors"]
    tl = timeline(run, meter)
    first, cut = r["turns"]

    # The avatar's picture flows all along, idle included: images out at about the channel's rate.
    span = tl.t_img[-1] - tl.t_img[0]
    assert len(tl.t_img) >= 0.5 * FPS * span, f"{len(tl.t_img)} images in {span:.1f} s"
    # The TTS's audio is replaced by the channel's (what the lips say), never passed on as well.
    kinds = {a["type"] for a in r["audio"]}
    assert kinds and "TTSAudioRawFrame" not in kinds, kinds
    # Frames the service does not handle pass through; the turn's control frames too.
    assert {"Marker", "TTSStartedFrame", "TTSStoppedFrame"} <= set(r["passed"]), r["passed"]

    # The lips move with the sound that is pushed with them.
    idle = np.median(tl.score[tl.t_img < first["start"]])
    # (until the next turn begins: on a loaded machine the pipeline's output lags the TTS's input)
    speaking = (tl.t_img > first["start"]) & (tl.t_img < cut["start"])
    assert tl.score[speaking].max() > idle + 10.0, "the mouth never opened"
    assert tl.rms[(tl.t_aud > first["start"]) & (tl.t_aud < cut["start"])].max() > 0.05, "no speech came out"
    lag, corr = av_lag(tl, first["start"] - 0.5, first["end"] + 1.0)
    assert corr > 0.3, f"mouth and sound do not match (r={corr:.2f})"
    assert abs(lag) <= AV_BOUND_S, f"lips {lag * 1000:+.0f} ms from the sound"

    # The interruption reached the end of the pipeline; the lips close within the budget and
    # the sound already on its way is not played.
    assert len(r["interrupts"]) == 1 and cut["interrupted"]
    cut_at = r["interrupts"][0]
    result = interruption(tl, cut_at, FPS)
    assert result.open_before > 0.3, "the mouth was not moving when the interruption came"
    assert result.closed_media_s <= INTERRUPT_BUDGET_S, f"lips closed {result.closed_media_s * 1000:.0f} ms after"
    assert result.last_loud_audio_s <= INTERRUPT_BUDGET_S, f"sound went on {result.last_loud_audio_s * 1000:.0f} ms"
    print(f"\npipecat: lips {lag * 1000:+.0f} ms from sound (r={corr:.2f}); interruption: lips closed "
          f"{result.closed_media_s * 1000:.0f} ms, sound {result.last_loud_audio_s * 1000:.0f} ms after")


async def test_a_wrong_token_is_a_clear_pipeline_error(make_server, pipecat_python, speech_wav, tmp_path):
    server = await make_server(token="t" * 32)
    run = await run_driver(pipecat_python, server.url, speech_wav, tmp_path / "bad", "--turns", "0",
                           "--timeout", "5", token="x" * 32, check=False)
    assert "cannot start the avatar" in run.log and "401" in run.log, run.log[-2000:]
    # With the right token the same pipeline runs.
    run = await run_driver(pipecat_python, server.url, speech_wav, tmp_path / "good", "--turns", "0",
                           "--lead", "0.5", token="t" * 32)
    assert len(run.result["images"]) > 5 and not run.result["errors"]
