// The web page in headless Chromium: a fake microphone plays samples/commands.wav, the page
// streams it to voxtral-server (demo model) over the realtime WebSocket, and the demo model's
// words must appear; again with turn detection, where each command is a line; then a file
// goes through the upload box. Screenshots go to OUT_DIR.
//   node tests/browser/live_page.test.mjs <voxtral-server> <repository root> <output dir>
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [server, root, outDir] = process.argv.slice(2);
if (!server || !root || !outDir) {
  console.error('usage: live_page.test.mjs <voxtral-server> <repository root> <output dir>');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const sample = (name) => path.join(root, 'samples', name);
const expected = JSON.parse(readFileSync(sample('commands.json'), 'utf8')).text;
const firstCommand = 'set the temperature to twenty one degrees';
if (!expected.startsWith(firstCommand)) throw new Error('samples/commands.json changed: update this test');

function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(server, ['-d', path.join(root, 'models/demo'), '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on (http:\/\/[^/\s]+)\//);
      if (m) resolve({ child, url: m[1] });
    });
    child.on('exit', (code) => reject(new Error(`voxtral-server exited (${code}): ${log}`)));
    setTimeout(() => reject(new Error(`voxtral-server did not start: ${log}`)), 30000);
  });
}

const { child, url } = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
         `--use-file-for-fake-audio-capture=${sample('commands.wav')}`],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  page.on('console', (m) => { if (m.type() === 'error') console.error(`page: ${m.text()}`); });
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('model').textContent === 'demo');

  // Live: the fake microphone speaks the five commands; the first must appear as it is said.
  await page.click('#start');
  await page.waitForFunction((text) => document.getElementById('live').textContent.includes(text),
                             firstCommand, { timeout: 60000 });
  const latency = await page.textContent('#latency-median');
  if (!/^\d+ ms$/.test(latency)) throw new Error(`no latency figure shown: "${latency}"`);
  await page.screenshot({ path: path.join(outDir, 'live-page.png') });
  await page.click('#stop');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 30000 });
  const live = (await page.textContent('#live')).trim();
  if (!live.startsWith(firstCommand)) throw new Error(`live transcript "${live}" does not start with "${firstCommand}"`);
  console.log(`live transcript: ${live} (median latency ${latency})`);

  // Live with turn detection: the server ends the first command at its pause, and the page
  // shows it as a line of its own while the next is spoken.
  await page.check('#turns');
  await page.click('#start');
  await page.waitForFunction(() => document.getElementById('live').textContent.split('\n').length >= 2, null,
                             { timeout: 60000 });
  const firstLine = (await page.textContent('#live')).split('\n')[0];
  if (firstLine !== firstCommand) throw new Error(`the first utterance's line is "${firstLine}", not "${firstCommand}"`);
  await page.screenshot({ path: path.join(outDir, 'live-turns.png') });
  await page.click('#stop');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 30000 });
  console.log(`turn detection: ${JSON.stringify((await page.textContent('#live')).split('\n'))}`);

  // File: the upload box shows the timestamped transcript and the real-time factor.
  await page.setInputFiles('#file', sample('lights.wav'));
  await page.waitForFunction(() => document.querySelectorAll('#segments li').length > 0, null, { timeout: 30000 });
  const segment = await page.textContent('#segments li');
  if (!/^\d\d:\d\d\.\d{3} → \d\d:\d\d\.\d{3}turn on the kitchen lights$/.test(segment)) {
    throw new Error(`unexpected file result "${segment}"`);
  }
  const status = await page.textContent('#file-status');
  if (!/real-time factor \d/.test(status)) throw new Error(`no real-time factor: "${status}"`);
  await page.screenshot({ path: path.join(outDir, 'file-result.png'), fullPage: true });
  console.log(`file result: ${segment}; ${status}`);
} catch (e) {
  failed = true;
  console.error(`browser test failed: ${e.message}`);
} finally {
  await browser.close();
  child.kill('SIGTERM');
}
process.exit(failed ? 1 : 0);
