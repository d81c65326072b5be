// The speaker page's microphone tap (an AudioWorklet, on the audio thread): the input mixed
// to mono, low-passed and resampled to 16 kHz with a windowed-sinc filter, cut into 50 ms
// frames of int16 posted to the page with their RMS level.
"use strict";

const OUT_RATE = 16000;
const FRAME = 800; // 50 ms at 16 kHz
const HALF = 8; // filter half-width, in output samples
const PHASES = 64; // the fractional positions the filter is tabulated for

class MicDownsampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / OUT_RATE; // input samples per output sample
    this.width = Math.ceil(HALF * Math.max(1, this.ratio)); // taps each side, input samples
    const cutoff = Math.min(0.45 * OUT_RATE, 0.45 * sampleRate) * 2 / sampleRate; // of fs_in
    this.kernels = [];
    for (let q = 0; q <= PHASES; q++) {
      const k = new Float32Array(2 * this.width);
      let sum = 0;
      for (let i = 0; i < k.length; i++) {
        const t = q / PHASES - (i - this.width + 1); // output position minus input sample
        const x = cutoff * t;
        const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
        const w = Math.abs(t) >= this.width ? 0 : 0.5 + 0.5 * Math.cos(Math.PI * t / this.width);
        k[i] = sinc * w;
        sum += k[i];
      }
      for (let i = 0; i < k.length; i++) k[i] /= sum; // unit gain at DC
      this.kernels.push(k);
    }
    this.buf = new Float32Array(1 << 15);
    this.len = 0; // samples held in buf
    this.pos = this.width; // next output position, in buf's samples (fractional)
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.energy = 0;
  }

  push(input) {
    if (this.len + input.length > this.buf.length) { // drop what no output needs any more
      const keep = Math.floor(this.pos) - this.width;
      this.buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.pos -= keep;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
  }

  process(inputs, outputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const n = channels[0].length;
      const mono = new Float32Array(n);
      for (const ch of channels) for (let i = 0; i < n; i++) mono[i] += ch[i] / channels.length;
      this.push(mono);
      while (Math.floor(this.pos) + this.width < this.len) {
        const i0 = Math.floor(this.pos);
        const k = this.kernels[Math.round((this.pos - i0) * PHASES)];
        let y = 0;
        for (let i = 0, j = i0 - this.width + 1; i < k.length; i++, j++) y += this.buf[j] * k[i];
        this.pos += this.ratio;
        y = Math.max(-1, Math.min(1, y));
        this.energy += y * y;
        this.frame[this.filled++] = Math.round(y * 32767);
        if (this.filled === FRAME) {
          const rms = Math.sqrt(this.energy / FRAME);
          this.port.postMessage({ pcm: this.frame, rms }, [this.frame.buffer]);
          this.frame = new Int16Array(FRAME);
          this.filled = 0;
          this.energy = 0;
        }
      }
    }
    if (outputs[0] && outputs[0][0]) outputs[0][0].fill(0);
    return true;
  }
}

registerProcessor("mic-downsampler", MicDownsampler);
