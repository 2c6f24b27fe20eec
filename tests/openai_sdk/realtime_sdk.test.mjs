// OpenAI's official Node SDK (the `openai` package from npm, its realtime WebSocket clients
// unchanged) against voxtral-server with the demo model: a transcription session at 24 kHz
// with commits, one with server VAD, and one in the beta events. The SDK connects only over
// wss://, so the server sits behind a TLS proxy here (a certificate made for the run), as it
// would behind nginx (deploy/); the client gets that certificate as a `ws` option.
// Expected words come from the samples' scripts (samples/*.json).
//   node tests/openai_sdk/realtime_sdk.test.mjs <voxtral-server> <repository root>
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

const [server, root] = process.argv.slice(2);
if (!server || !root) {
  console.error('usage: realtime_sdk.test.mjs <voxtral-server> <repository root>');
  process.exit(2);
}
let OpenAI, OpenAIRealtimeWS, BetaRealtimeWS;
try {
  ({ default: OpenAI } = await import('openai'));
  ({ OpenAIRealtimeWS } = await import('openai/realtime/ws'));
  ({ OpenAIRealtimeWS: BetaRealtimeWS } = await import('openai/beta/realtime/ws'));
} catch (e) {
  console.error(`the openai package is not installed in tests/openai_sdk (run scripts/setup.sh): ${e.message}`);
  process.exit(1);
}

const text = (name) => JSON.parse(readFileSync(path.join(root, 'samples', `${name}.json`), 'utf8')).text;
// 16-bit PCM of a sample at `rate` (sox resamples), then `silence` seconds of zeros.
function pcm(name, rate, silence = 0) {
  const out = spawnSync('sox', [path.join(root, 'samples', `${name}.wav`), '-t', 'raw', '-r', String(rate), '-e', 'signed',
                                '-b', '16', '-c', '1', '-L', '-'], { maxBuffer: 64 << 20 });
  if (out.status !== 0) throw new Error(`sox failed: ${out.stderr}`);
  return Buffer.concat([out.stdout, Buffer.alloc(Math.round(silence * rate) * 2)]);
}

const work = mkdtempSync(path.join(os.tmpdir(), 'voxtral-sdk-'));
const key = path.join(work, 'key.pem'), certFile = path.join(work, 'cert.pem');
const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', certFile,
                                   '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']);
if (made.status !== 0) throw new Error(`openssl failed: ${made.stderr}`);
const cert = readFileSync(certFile);

function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(server, ['-d', path.join(root, 'models/demo'), '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on http:\/\/([^:/\s]+):(\d+)\//);
      if (m) resolve({ child, port: Number(m[2]) });
    });
    child.on('exit', (code) => reject(new Error(`voxtral-server exited (${code}): ${log}`)));
    setTimeout(() => reject(new Error(`voxtral-server did not start: ${log}`)), 60000);
  });
}

// TLS in front of the server's port, bytes passed through.
function startProxy(port) {
  return new Promise((resolve) => {
    const proxy = tls.createServer({ key: readFileSync(key), cert }, (client) => {
      const upstream = net.connect(port, '127.0.0.1');
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    proxy.listen(0, '127.0.0.1', () => resolve(proxy));
  });
}

// Opens a client, runs `script(rt, next)` where next(type) resolves with the next event of
// that type (events are queued as they come), and closes it.
async function session(makeClient, script) {
  const rt = makeClient();
  const queue = [];
  const waiting = [];
  const deliver = () => {
    for (let i = 0; i < waiting.length; i++) {
      const at = queue.findIndex((e) => e.type === waiting[i].type);
      if (at >= 0) {
        waiting[i].resolve(queue.splice(at, 1)[0]);
        waiting.splice(i--, 1);
      }
    }
  };
  rt.on('event', (event) => { queue.push(event); deliver(); });
  rt.on('error', (error) => { queue.push({ type: 'sdk_error', error }); deliver(); });
  const next = (type, ms = 60000) => new Promise((resolve, reject) => {
    waiting.push({ type, resolve });
    deliver();
    setTimeout(() => reject(new Error(`no ${type} event within ${ms} ms; got ${queue.map((e) => e.type).join(', ')}`)), ms);
  });
  await new Promise((resolve, reject) => { rt.socket.on('open', resolve); rt.socket.on('error', reject); });
  try {
    await script(rt, next, queue);
  } finally {
    rt.close();
  }
}

function append(rt, audio, rate) {
  const piece = (rate / 10) * 2;  // 100 ms
  for (let at = 0; at < audio.length; at += piece) {
    rt.send({ type: 'input_audio_buffer.append', audio: audio.subarray(at, at + piece).toString('base64') });
  }
}

const results = [];
async function check(name, body) {
  try {
    await body();
    results.push([name, null]);
    console.log(`ok ${name}`);
  } catch (e) {
    results.push([name, e]);
    console.error(`FAILED ${name}: ${e.stack || e.message}`);
  }
}
function equal(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: got ${JSON.stringify(actual)}, want ${JSON.stringify(expected)}`);
}

const { child, port } = await startServer();
// A CTest timeout ends this process with SIGTERM: the server goes with it.
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => { child.kill('SIGTERM'); process.exit(1); });
const proxy = await startProxy(port);
const client = new OpenAI({ apiKey: 'not-checked-here', baseURL: `https://127.0.0.1:${proxy.address().port}/v1` });
const options = { ca: cert };
try {
  await check('GA client: a 24 kHz transcription session with commits', () =>
    session(() => new OpenAIRealtimeWS({ model: 'gpt-4o-transcribe', options }, client), async (rt, next) => {
      equal((await next('session.created')).session.type, 'transcription', 'session.created type');
      rt.send({ type: 'session.update', session: { type: 'transcription', audio: { input: {
        format: { type: 'audio/pcm', rate: 24000 }, transcription: { model: 'gpt-4o-transcribe' }, turn_detection: null } } } });
      equal((await next('session.updated')).session.audio.input.format.rate, 24000, 'session.updated rate');
      for (const name of ['lights', 'timer']) {
        append(rt, pcm(name, 24000), 24000);
        rt.send({ type: 'input_audio_buffer.commit' });
        const committed = await next('input_audio_buffer.committed');
        const completed = await next('conversation.item.input_audio_transcription.completed');
        equal(completed.item_id, committed.item_id, 'completed item_id');
        equal(completed.transcript, text(name), `${name} transcript`);
      }
      rt.send({ type: 'input_audio_buffer.commit' });  // nothing appended since
      equal((await next('sdk_error')).error.error.code, 'input_audio_buffer_commit_empty', 'empty commit error code');
    }));

  await check('GA client: server VAD ends each phrase by itself', () =>
    session(() => new OpenAIRealtimeWS({ model: 'gpt-4o-transcribe', options }, client), async (rt, next) => {
      await next('session.created');
      rt.send({ type: 'session.update', session: { type: 'transcription', audio: { input: {
        format: { type: 'audio/pcm', rate: 24000 }, turn_detection: { type: 'server_vad', silence_duration_ms: 500 } } } } });
      await next('session.updated');
      append(rt, pcm('numbers', 24000, 1.0), 24000);  // two phrases 0.64 s apart, no commit
      for (const phrase of ['four one five two', 'nine hundred twelve']) {
        const started = await next('input_audio_buffer.speech_started');
        const stopped = await next('input_audio_buffer.speech_stopped');
        if (!(stopped.audio_end_ms > started.audio_start_ms)) throw new Error(`turn times ${started.audio_start_ms} ${stopped.audio_end_ms}`);
        const completed = await next('conversation.item.input_audio_transcription.completed');
        equal(completed.item_id, started.item_id, 'completed item_id');
        equal(completed.transcript, phrase, 'phrase transcript');
      }
    }));

  await check('beta client: transcription_session.update with pcm16', () =>
    session(() => new BetaRealtimeWS({ model: 'gpt-4o-transcribe', options }, client), async (rt, next) => {
      await next('transcription_session.created');
      rt.send({ type: 'transcription_session.update', session: { input_audio_format: 'pcm16',
        input_audio_transcription: { model: 'gpt-4o-transcribe' }, turn_detection: null } });
      equal((await next('transcription_session.updated')).session.input_audio_format, 'pcm16', 'format');
      append(rt, pcm('numbers', 24000), 24000);
      rt.send({ type: 'input_audio_buffer.commit' });
      await next('conversation.item.created');
      equal((await next('conversation.item.input_audio_transcription.completed')).transcript, text('numbers'), 'transcript');
    }));
} finally {
  proxy.close();
  child.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
const failed = results.filter(([, e]) => e).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
