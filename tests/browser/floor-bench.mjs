// Bench: the echo's glass-to-glass latency against the in-page loopback floor
// (web/floor.js), one page, one session, one run. Not a test (no assertions beyond
// "it ran"); numbers for BENCHMARKS.md. Run by hand:
//
//   node tests/browser/floor-bench.mjs [--json]
//   env: FACE_ECHO_BIN (default target/debug/face-echo), FACE_ECHO_ARGS (server flags),
//        FACE_ECHO_SIZE=320x240 (fake camera, default 640x480), BENCH_SECONDS=20
//
// Phases, back to back in the same session: echo alone (floor off), then echo and
// floor together. Every 4 s (about the 120 frames the page's windows hold) it reads
// window.faceEcho: echo p50/p95, floor p50/p95, echo − floor per frame p50/p95, and
// each path's stages (PathStats). It prints each window and the median of each
// number over the phase's windows.
import { spawn } from 'node:child_process';
import { fakeCamera, freePort, launchWithFakeCamera, startPage, untilHealthy } from './harness.mjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = process.env.FACE_ECHO_BIN ?? join(repo, 'target/debug/face-echo');
const extraArgs = (process.env.FACE_ECHO_ARGS ?? '').split(/\s+/).filter(Boolean);
const [WIDTH, HEIGHT] = (process.env.FACE_ECHO_SIZE ?? '640x480').split('x').map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const WINDOW_MS = 4000;
const asJson = process.argv.includes('--json');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? v[Math.floor((v.length - 1) / 2)] : null;
};
const round = (x, digits = 1) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

async function phase(page, name) {
  const windows = [];
  for (let t = 0; t < SECONDS * 1000; t += WINDOW_MS) {
    await sleep(WINDOW_MS);
    const s = await page.evaluate(() => window.faceEcho);
    const w = {
      echoP50: s.latencyMs.p50, echoP95: s.latencyMs.p95,
      floorP50: s.floor.latencyMs.p50, floorP95: s.floor.latencyMs.p95,
      overP50: s.echoMinusFloorMs.p50, overP95: s.echoMinusFloorMs.p95, overMean: s.echoMinusFloorMs.mean,
      arrivalP50: s.echoMinusFloorArrivalMs.p50, arrivalMean: s.echoMinusFloorArrivalMs.mean, paired: s.echoMinusFloorMs.frames,
      echo: s.paths.echo, floor: s.paths.floor,
    };
    windows.push(w);
    if (!asJson) console.log(`${name} ${JSON.stringify(w, (k, v) => (typeof v === 'number' ? round(v) : v))}`);
  }
  const summary = {};
  const add = (key, values) => {
    const value = round(median(values), 2);
    if (value !== null) summary[key] = value;
  };
  for (const key of ['echoP50', 'echoP95', 'floorP50', 'floorP95', 'overP50', 'overP95', 'overMean', 'arrivalP50', 'arrivalMean']) {
    add(key, windows.map((w) => w[key]));
  }
  for (const path of ['echo', 'floor']) {
    for (const key of ['kbps', 'encodeMs', 'pacerMs', 'jitterBufferMs', 'jitterTargetMs', 'decodeMs', 'decodedFps', 'dropped', 'rttMs', 'nacks', 'lost']) {
      add(`${path}.${key}`, windows.map((w) => w[path]?.[key]));
    }
  }
  return summary;
}

const work = mkdtempSync(join(tmpdir(), 'face-echo-floor-'));
const y4m = fakeCamera(work, 'astronaut.png', WIDTH, HEIGHT);
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const server = spawn(bin, ['--listen', `127.0.0.1:${port}`, ...extraArgs], { stdio: 'ignore' });
let context;
try {
  await untilHealthy(base);
  context = await launchWithFakeCamera(work, y4m);
  const page = context.pages()[0] ?? await context.newPage();
  await startPage(page, base);
  await page.waitForFunction(() => window.faceEcho.latencyMs.samples >= 120 && window.faceEcho.detections >= 1, null, { timeout: 120_000 });
  await sleep(WINDOW_MS);          // past the start-up (first keyframes, jitter buffer settling)
  const alone = await phase(page, 'echo alone');
  await page.check('#floor-on');
  await page.waitForFunction(() => window.faceEcho.echoMinusFloorMs.frames >= 30, null, { timeout: 60_000 })
    .catch(async (err) => { throw new Error(`${err.message}: ${JSON.stringify(await page.evaluate(() => window.faceEcho))}`); });
  const both = await phase(page, 'echo + floor');
  const result = {
    size: `${WIDTH}x${HEIGHT}`, serverArgs: extraArgs.join(' '), seconds: SECONDS, alone, both,
    echoP50WithFloorOverAlone: round(both.echoP50 / alone.echoP50, 2),
  };
  console.log(asJson ? JSON.stringify(result) : `summary (medians of ${WINDOW_MS / 1000} s windows): ${JSON.stringify(result)}`);
} finally {
  await context?.close().catch(() => {});
  server.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
