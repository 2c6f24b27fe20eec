// Runs on the audio thread: mixes the microphone to mono, resamples it to 16 kHz with a
// windowed-sinc filter, and posts 16-bit PCM to the page in chunks of 100 ms.
const TARGET_RATE = 16000;
const HALF_TAPS = 16;
const CHUNK = 1600;

class PcmSender extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE;           // input samples per output sample
    this.cutoff = Math.min(1, 1 / this.step) * 0.9;  // low-pass below the new Nyquist
    this.history = new Float32Array(0);
    this.position = HALF_TAPS;                       // next output's position in history
    this.out = new Int16Array(CHUNK);
    this.fill = 0;
  }

  kernel(t) {
    if (Math.abs(t) >= HALF_TAPS) return 0;
    const x = t * this.cutoff;
    const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
    const window = 0.5 + 0.5 * Math.cos((Math.PI * t) / HALF_TAPS);
    return this.cutoff * sinc * window;
  }

  emit(value) {
    this.out[this.fill++] = Math.max(-32768, Math.min(32767, Math.round(value * 32768)));
    if (this.fill === CHUNK) {
      this.port.postMessage(this.out.slice(0));
      this.fill = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const frames = input[0].length;
    const mono = new Float32Array(frames);
    for (const channel of input) for (let i = 0; i < frames; i++) mono[i] += channel[i] / input.length;
    if (this.step === 1) {
      for (let i = 0; i < frames; i++) this.emit(mono[i]);
      return true;
    }
    const joined = new Float32Array(this.history.length + frames);
    joined.set(this.history);
    joined.set(mono, this.history.length);
    while (this.position + HALF_TAPS < joined.length) {
      const centre = Math.floor(this.position);
      let sum = 0;
      for (let i = centre - HALF_TAPS + 1; i <= centre + HALF_TAPS; i++) {
        if (i >= 0) sum += joined[i] * this.kernel(this.position - i);
      }
      this.emit(sum);
      this.position += this.step;
    }
    const keep = Math.max(0, Math.floor(this.position) - HALF_TAPS);
    this.history = joined.slice(keep);
    this.position -= keep;
    return true;
  }
}

registerProcessor('pcm-sender', PcmSender);
