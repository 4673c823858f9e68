"""A voice agent with a lipstream avatar, over pipecat's SmallWebRTC transport.

    pip install -e "integrations/pipecat[example]"      # in its own venv (see the README)
    python run_live.py                                  # the lipstream server, in lipstream's venv
    LLM_API_KEY=... STT_API_KEY=... TTS_API_KEY=... python integrations/pipecat/examples/agent.py
    # then open http://localhost:7860/client and talk

The speech recognition, the LLM and the TTS are yours to choose: any OpenAI-compatible
endpoint is configured by the environment variables below (a local vLLM / Ollama /
Whisper / Kokoro server works as well as OpenAI), or swap in any other pipecat service.

  LIPSTREAM_URL     the lipstream server             (default http://127.0.0.1:8080)
  LIPSTREAM_TOKEN   its token, required off loopback
  LIPSTREAM_AVATAR  the avatar of the channel        (default: the server's default)
  LLM_BASE_URL, LLM_API_KEY, LLM_MODEL               (default model gpt-4o-mini)
  STT_BASE_URL, STT_API_KEY, STT_MODEL               (default model whisper-1)
  TTS_BASE_URL, TTS_API_KEY, TTS_VOICE               (default voice alloy)
"""

from __future__ import annotations

import os

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.runner.types import RunnerArguments
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

from lipstream_pipecat import LipstreamVideoService

SYSTEM_PROMPT = ("You are a friendly customer-service assistant shown as a talking avatar. "
                 "Answer in one or two short spoken sentences, without lists or markdown.")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def services():
    """Your STT, LLM and TTS: edit here, or configure them through the environment."""
    stt = OpenAISTTService(api_key=_env("STT_API_KEY"), base_url=_env("STT_BASE_URL"),
                           model=_env("STT_MODEL", "whisper-1"))
    llm = OpenAILLMService(api_key=_env("LLM_API_KEY"), base_url=_env("LLM_BASE_URL"),
                           model=_env("LLM_MODEL", "gpt-4o-mini"))
    tts = OpenAITTSService(api_key=_env("TTS_API_KEY"), base_url=_env("TTS_BASE_URL"),
                           voice=_env("TTS_VOICE", "alloy"))
    return stt, llm, tts


async def bot(runner_args: RunnerArguments) -> None:
    transport = SmallWebRTCTransport(
        webrtc_connection=runner_args.webrtc_connection,
        params=TransportParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            video_out_enabled=True,
            video_out_is_live=True,
            video_out_width=512,     # the avatar's size (GET /channels/{id}: width, height)
            video_out_height=512,
            video_out_framerate=25,
            vad_analyzer=SileroVADAnalyzer(),
        ),
    )
    stt, llm, tts = services()
    avatar = LipstreamVideoService(
        base_url=_env("LIPSTREAM_URL", "http://127.0.0.1:8080"),
        token=_env("LIPSTREAM_TOKEN"),
        avatar=_env("LIPSTREAM_AVATAR"),
    )
    context = LLMContext([{"role": "system", "content": SYSTEM_PROMPT}])
    aggregators = LLMContextAggregatorPair(context)
    pipeline = Pipeline([
        transport.input(),
        stt,
        aggregators.user(),
        llm,
        tts,
        avatar,              # TTS audio in; the avatar's video and its synced audio out
        transport.output(),
        aggregators.assistant(),
    ])
    task = PipelineTask(pipeline)   # the user barging in interrupts: the avatar stops and closes its lips

    @transport.event_handler("on_client_connected")
    async def on_client_connected(_transport, _client) -> None:
        context.add_message({"role": "user", "content": "Greet the user in one sentence."})
        await task.queue_frames([LLMRunFrame()])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport, _client) -> None:
        await task.cancel()

    await PipelineRunner(handle_sigint=False).run(task)


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
