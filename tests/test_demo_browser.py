"""The demo's clips play in a browser with sound (issue 10): mp4 files written by `AVPipeline` (the
code `avgen sample` and the demo's generation stages run) load, play and decode both streams in
Debian's headless Chromium, served over http as the rating app serves them.

The generator is a randomly initialized debug DiT with the debug video autoencoder and audio codec
on the CPU: the pictures and sound are noise, but the files take the demo's exact path (denoising
loop, decoders, `save` -> `write_clip`). Skips, saying why, when /usr/bin/chromium or Playwright is
absent (the `browser` fixture and mark of tests/conftest.py).
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from av_model.sample.pipeline import AVPipeline
from avio import probe

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIZE = (48, 64)  # (H, W): not square, so a swapped width and height shows
FPS = 16.0
SECONDS = 2.0  # a multiple of the debug autoencoder's 4 frames


def _pipeline() -> AVPipeline:
    """`AVPipeline` around a random debug DiT, the debug codec (hop 320, 24 kHz) and the debug video
    autoencoder, with the geometry a latent cache of 48x64 clips at 16 fps would record."""
    from audio_codec import EncodecCodec
    from audio_codec import get_preset as codec_preset
    from av_model.cache.format import LatentSpec
    from av_model.dit import AVDiT
    from av_model.flow.sampling import SamplerConfig
    from av_model.text import load_text_encoder
    from av_model.train.lit import build_dit_config
    from av_model.vae import VideoAutoencoder
    from av_model.vae import get_preset as vae_preset

    torch.manual_seed(0)
    codec = EncodecCodec(codec_preset("debug", ratios=[8, 8, 5], target_bandwidths=[0.45, 0.9, 1.8], chunk_seconds=None)).eval()
    vae = VideoAutoencoder(vae_preset("debug")).eval()
    text = load_text_encoder("minilm")
    meta = {
        "fingerprints": {"codec": codec.fingerprint, "vae": vae.fingerprint, "text": text.fingerprint},
        "video": {"fps": FPS, "height": SIZE[0], "width": SIZE[1], "latent_dim": vae.latent_dim,
                  "latent_rate": FPS / vae.temporal_compression, "temporal_compression": vae.temporal_compression,
                  "spatial_compression": vae.spatial_compression},
        "audio": {"sample_rate": codec.sample_rate, "channels": codec.channels, "latent_dim": codec.latent_dim,
                  "latent_rate": codec.frame_rate, "hop_length": codec.hop_length},
        "text": {"dims": list(text.dims), "specs": ["minilm"]},
    }
    model = AVDiT(build_dit_config("debug", None, LatentSpec.from_meta(meta))).eval()
    return AVPipeline(model, text, codec, vae, meta, SamplerConfig(steps=2))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two generated clips, `0000.mp4` and `0001.mp4` with their sidecars, in one folder."""
    out = tmp_path_factory.mktemp("samples")
    pipe = _pipeline()
    with torch.no_grad():
        generated = pipe(["a red ball bounces on the floor", "a blue square flashes with a beep"],
                         duration=SECONDS, batch_size=2, progress=False)
    paths = pipe.save(generated, out)  # the writer `avgen sample` uses
    assert [p.name for p in paths] == ["0000.mp4", "0001.mp4"]
    return out


@pytest.fixture(scope="module")
def server(clips: Path) -> Iterator[str]:
    """The clips' folder over http on a free localhost port (media from file:// pages may be blocked)."""
    handler = functools.partial(_QuietHandler, directory=str(clips))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no request log in the test output
        pass


@pytest.fixture(scope="module")
def page(browser: Any, server: str) -> Iterator[Any]:
    page = browser.new_page()
    page.set_default_timeout(20_000)
    yield page
    page.context.close()


# Plays the clip unmuted until it has run for at least 0.6 s (or ended), then reports what the media
# element decoded. Every await has its own time limit so a stuck player reports instead of hanging.
PLAY_JS = """
async (src) => {
  const v = document.createElement('video');
  v.muted = false;
  v.preload = 'auto';
  document.body.appendChild(v);
  const settle = (events, ms) => new Promise(resolve => {
    const t = setTimeout(() => resolve('timeout'), ms);
    for (const e of events) v.addEventListener(e, () => { clearTimeout(t); resolve(e); }, {once: true});
  });
  const loaded = settle(['loadeddata', 'error'], 10000);
  v.src = src;
  const load = await loaded;
  let playError = null;
  try { await v.play(); } catch (e) { playError = String(e); }
  const start = performance.now();
  while (!v.ended && v.currentTime < 0.6 && performance.now() - start < 10000) {
    await new Promise(r => setTimeout(r, 50));
  }
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
  const r = {
    load, playError, readyState: v.readyState, duration: v.duration, currentTime: v.currentTime,
    paused: v.paused, muted: v.muted, videoWidth: v.videoWidth, videoHeight: v.videoHeight,
    totalVideoFrames: q ? q.totalVideoFrames : null,
    videoDecoded: v.webkitDecodedFrameCount, audioDecodedBytes: v.webkitAudioDecodedByteCount,
    audioTracks: v.audioTracks ? v.audioTracks.length : null,
    error: v.error ? {code: v.error.code, message: v.error.message} : null,
  };
  v.pause();
  v.remove();
  return r;
}
"""


def test_generated_clips_play_with_sound_in_chromium(clips: Path, server: str, page) -> None:
    page.goto(f"{server}/")  # same origin as the clips
    for name in ("0000.mp4", "0001.mp4"):
        info = probe(clips / name)  # what was written: H.264 and AAC
        assert info.video_codec == "h264" and info.audio_codec == "aac" and (info.height, info.width) == SIZE
        r = page.evaluate(PLAY_JS, f"{server}/{name}")
        where = f"{name} in Chromium: {r}"
        assert r["error"] is None and r["load"] == "loadeddata", where  # no MediaError (e.g. codec unsupported)
        assert r["playError"] is None and not r["muted"], where
        assert r["readyState"] >= 2, where  # HAVE_CURRENT_DATA
        assert abs(r["duration"] - SECONDS) <= 0.1, where
        assert r["currentTime"] >= 0.5, where  # playback advanced
        assert (r["videoWidth"], r["videoHeight"]) == (SIZE[1], SIZE[0]), where
        assert max(r["totalVideoFrames"] or 0, r["videoDecoded"] or 0) > 0, where  # pictures decoded
        # sound decoded: Chromium has no `audioTracks` without a flag, the byte count is the check
        assert r["audioDecodedBytes"] > 0, where
        if r["audioTracks"] is not None:
            assert r["audioTracks"] >= 1, where


def test_the_sound_check_tells_a_silent_file(clips: Path, server: str, page) -> None:
    """Control: the same writer without audio gives no decoded audio bytes, so the check above is
    one a clip without sound fails."""
    from avio import read_clip, write_clip

    silent = read_clip(clips / "0000.mp4", require_audio=False)
    write_clip(clips / "silent.mp4", silent.frames, FPS)
    page.goto(f"{server}/")
    r = page.evaluate(PLAY_JS, f"{server}/silent.mp4")
    assert r["error"] is None and r["videoDecoded"] > 0, r
    assert not r["audioDecodedBytes"], r
