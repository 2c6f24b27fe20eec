// The web page: live microphone transcription over /v1/realtime, and file transcription
// through /v1/audio/transcriptions.
'use strict';
const $ = (id) => document.getElementById(id);
let modelId = '';

function apiKey() { return $('api-key').value.trim(); }
function authHeaders() { return apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {}; }
function formatTime(s) {
  const ms = Math.round(s * 1000);
  const pad = (n, w) => String(n).padStart(w, '0');
  return `${pad(Math.floor(ms / 60000), 2)}:${pad(Math.floor(ms / 1000) % 60, 2)}.${pad(ms % 1000, 3)}`;
}
function base64(int16) {
  const bytes = new Uint8Array(int16.buffer, int16.byteOffset, int16.byteLength);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

async function loadInfo() {
  try {
    const health = await (await fetch('/health')).json();
    modelId = health.model;
    $('model').textContent = health.model;
    $('backend').textContent = health.backend;
  } catch (e) {
    $('model').textContent = 'unavailable';
  }
}

// ---------------------------------------------------------------- microphone
// With turn detection the server ends each utterance itself: `lines` holds the finished
// ones, `text` the one being spoken.
const live = { ws: null, context: null, media: null, node: null, text: '', lines: [], sentSamples: 0,
               captureStart: 0, latencies: [], stopping: false, failed: false, turns: false, pending: 0 };

function showLive() {
  $('live').textContent = [...live.lines, live.text.trimStart()].filter((l) => l).join('\n');
}

function setStatus(text) { $('status').textContent = text; }

async function startMicrophone() {
  $('start').disabled = true;
  live.text = '';
  live.lines = [];
  live.pending = 0;  // utterances ended whose transcription.done is still to come
  live.turns = $('turns').checked;
  $('turns').disabled = true;
  live.latencies = [];
  live.sentSamples = 0;
  live.stopping = false;
  live.failed = false;
  $('live').textContent = '';
  $('latency-last').textContent = '–';
  $('latency-median').textContent = '–';
  try {
    live.media = await navigator.mediaDevices.getUserMedia({
      // The model wants the signal as spoken: no echo cancellation, noise suppression or gain riding.
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (e) {
    setStatus(`No microphone: ${e.message}`);
    $('start').disabled = false;
    return;
  }
  live.context = new AudioContext();
  await live.context.audioWorklet.addModule('/audio-worklet.js');
  const source = live.context.createMediaStreamSource(live.media);
  live.node = new AudioWorkletNode(live.context, 'pcm-sender');
  const mute = live.context.createGain();
  mute.gain.value = 0;
  source.connect(live.node).connect(mute).connect(live.context.destination);

  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = apiKey() ? `?api_key=${encodeURIComponent(apiKey())}` : '';
  const ws = new WebSocket(`${scheme}://${location.host}/v1/realtime${query}`);
  live.ws = ws;
  let ready = false;
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === 'session.created') {
      const update = { type: 'session.update', model: modelId };
      if (live.turns) update.turn_detection = { type: 'server_vad' };
      ws.send(JSON.stringify(update));
      ws.send(JSON.stringify({ type: 'input_audio_buffer.commit' }));
      ready = true;
      setStatus('Listening… speak now.');
      $('stop').disabled = false;
    } else if (event.type === 'transcription.delta') {
      live.text += event.delta;
      showLive();
      if (typeof event.audio_end === 'number' && event.delta.trim()) {
        const latency = performance.now() - (live.captureStart + event.audio_end * 1000);
        live.latencies.push(latency);
        $('latency-last').textContent = `${Math.max(0, latency).toFixed(0)} ms`;
        $('latency-median').textContent = `${Math.max(0, median(live.latencies)).toFixed(0)} ms`;
      }
    } else if (event.type === 'input_audio_buffer.speech_started') {
      if (!live.stopping) setStatus('Hearing speech…');
    } else if (event.type === 'input_audio_buffer.speech_stopped') {
      live.pending += 1;
      if (!live.stopping) setStatus('Listening… speak now.');
    } else if (event.type === 'transcription.done') {
      live.text = '';
      if (event.text.trim()) live.lines.push(event.text.trim());
      showLive();
      live.pending -= 1;
      if (live.stopping && live.pending <= 0) {  // the final commit's answer: the session is over
        setStatus('Done.');
        ws.close();
      }
    } else if (event.type === 'error') {
      live.failed = true;  // a busy or failed session is closed next: keep its reason shown
      setStatus(`Server error: ${event.error}`);
    }
  };
  ws.onclose = () => {
    if (!live.stopping && !live.failed) setStatus('Connection closed.');
    stopAudio();
    $('start').disabled = false;
    $('stop').disabled = true;
    $('turns').disabled = false;
  };
  ws.onerror = () => setStatus('Cannot reach the server\'s realtime endpoint.');
  live.node.port.onmessage = (e) => {
    if (!ready || ws.readyState !== WebSocket.OPEN || live.stopping) return;
    if (live.sentSamples === 0) live.captureStart = performance.now() - (e.data.length / 16);
    live.sentSamples += e.data.length;
    ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: base64(e.data) }));
    $('audio-seconds').textContent = `${(live.sentSamples / 16000).toFixed(1)} s`;
  };
}

function stopAudio() {
  if (live.media) live.media.getTracks().forEach((t) => t.stop());
  if (live.context) live.context.close();
  live.media = null;
  live.context = null;
}

function stopMicrophone() {
  live.stopping = true;
  $('stop').disabled = true;
  stopAudio();
  if (live.ws && live.ws.readyState === WebSocket.OPEN) {
    live.pending += 1;
    live.ws.send(JSON.stringify({ type: 'input_audio_buffer.commit', final: true }));
    setStatus('Finishing…');
  }
}

// ---------------------------------------------------------------- files
async function transcribeFile(file) {
  const form = new FormData();
  form.append('file', file, file.name);
  form.append('model', modelId);
  form.append('response_format', 'verbose_json');
  form.append('timestamp_granularities[]', 'segment');
  form.append('timestamp_granularities[]', 'word');
  $('file-status').textContent = `Transcribing ${file.name}…`;
  $('segments').textContent = '';
  const started = performance.now();
  try {
    const response = await fetch('/v1/audio/transcriptions', { method: 'POST', body: form, headers: authHeaders() });
    const result = await response.json();
    if (!response.ok) throw new Error(result.error ? result.error.message : response.statusText);
    const seconds = (performance.now() - started) / 1000;
    $('file-status').textContent =
      `${file.name}: ${result.duration.toFixed(1)} s of audio in ${seconds.toFixed(2)} s ` +
      `(real-time factor ${(seconds / Math.max(result.duration, 1e-3)).toFixed(3)}).`;
    for (const segment of result.segments || []) {
      const item = document.createElement('li');
      const time = document.createElement('time');
      time.textContent = `${formatTime(segment.start)} → ${formatTime(segment.end)}`;
      item.append(time, segment.text);
      $('segments').append(item);
    }
  } catch (e) {
    $('file-status').textContent = `${file.name}: ${e.message}`;
  }
}

$('start').addEventListener('click', startMicrophone);
$('stop').addEventListener('click', stopMicrophone);
$('file').addEventListener('change', (e) => { if (e.target.files[0]) transcribeFile(e.target.files[0]); });
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  if (e.dataTransfer.files[0]) transcribeFile(e.dataTransfer.files[0]);
});
loadInfo();
