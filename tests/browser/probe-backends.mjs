// Probe: face-api in headless Chromium with each tfjs backend (wasm, webgl, cpu, and
// whatever tfjs picks by default) × each detector (TinyFaceDetector, SSD MobileNet v1)
// on tests/fixtures/astronaut.png. Prints faces found, first-pass ms and the median of
// 5 later passes. Not a test (no assertions beyond "it ran"); run by hand:
//
//   node tests/browser/probe-backends.mjs [--json]
//   env: PROBE_BACKENDS=wasm,webgl  PROBE_MODELS=/probe-models/face-api  PROBE_EXTRA_FLAGS='...'
//        FACE_ECHO_BIN=target/release/face-echo
//
// Serves a temporary copy of web/ (plus fixtures/probe.html and astronaut.png) with
// target/debug/face-echo --web-dir. /models/ always comes from the binary (--web-dir does
// not change that); a debug build's rust-embed reads models/ from the source tree at run
// time, a release build has them baked in. If the binary cannot serve the SSD weights
// (an old release build), the probe loads all weights from a copy of models/ inside the
// temporary web dir instead (/probe-models/...), and says so.
import { spawn } from 'node:child_process';
import { CHROMIUM_FLAGS as BASE_FLAGS, freePort } from './harness.mjs';
import { cpSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = process.env.FACE_ECHO_BIN ?? join(repo, 'target/debug/face-echo');
const asJson = process.argv.includes('--json');
const BACKENDS = (process.env.PROBE_BACKENDS ?? 'default,wasm,webgl,cpu').split(',');
const CHROMIUM_FLAGS = [
  ...BASE_FLAGS,
  ...(process.env.PROBE_EXTRA_FLAGS ?? '').split(/\s+/).filter(Boolean),
];
const truth = JSON.parse(readFileSync(join(repo, 'tests/fixtures/astronaut_face.json'), 'utf8'));

async function waitHealthy(base, server, log) {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`face-echo exited (${server.exitCode}):\n${log.join('')}`);
    try { if ((await fetch(`${base}/healthz`)).ok) return; } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`face-echo did not come up:\n${log.join('')}`);
}

function iou(b) {
  const ix = Math.max(0, Math.min(b.x + b.w, truth.x + truth.w) - Math.max(b.x, truth.x));
  const iy = Math.max(0, Math.min(b.y + b.h, truth.y + truth.h) - Math.max(b.y, truth.y));
  const inter = ix * iy;
  return inter / (b.w * b.h + truth.w * truth.h - inter);
}

const tmp = mkdtempSync(join(tmpdir(), 'face-echo-probe-'));
const webDir = join(tmp, 'web');
cpSync(join(repo, 'web'), webDir, { recursive: true });
cpSync(join(here, 'fixtures/probe.html'), join(webDir, 'probe.html'));
cpSync(join(repo, 'tests/fixtures/astronaut.png'), join(webDir, 'astronaut.png'));
cpSync(join(repo, 'models'), join(webDir, 'probe-models'), { recursive: true }); // reachable either way

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const log = [];
const server = spawn(bin, ['--listen', `127.0.0.1:${port}`, '--web-dir', webDir], { stdio: ['ignore', 'pipe', 'pipe'] });
server.stdout.on('data', (d) => log.push(String(d)));
server.stderr.on('data', (d) => log.push(String(d)));
let browser;
try {
  await waitHealthy(base, server, log);

  // Which URL serves the SSD weights: the server's /models/ or the copy in the web dir.
  const ssdAt = async (prefix) => (await fetch(`${base}${prefix}/ssd_mobilenetv1_model-weights_manifest.json`)).status;
  const modelsFromBinary = (await ssdAt('/models/face-api')) === 200;
  const models = process.env.PROBE_MODELS ?? (modelsFromBinary ? '/models/face-api' : '/probe-models/face-api');
  const wasmType = (await fetch(`${base}/vendor/tfjs-backend-wasm/tfjs-backend-wasm-simd.wasm`)).headers.get('content-type');

  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_FLAGS });
  const results = [];
  for (const backend of BACKENDS) {
    const page = await browser.newPage();
    const console_ = [];
    const fetched = [];
    page.on('console', (m) => { if (m.type() === 'warning' || m.type() === 'error') console_.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => console_.push(`pageerror: ${e.message}`));
    page.on('response', (r) => { if (/\.(wasm|bin)$/.test(r.url()) || r.status() >= 400) fetched.push(`${r.status()} ${new URL(r.url()).pathname} ${r.headers()['content-type']}`); });
    await page.goto(`${base}/probe.html?backend=${backend}&models=${encodeURIComponent(models)}`);
    await page.waitForFunction(() => window.probeResult, null, { timeout: 180000, polling: 250 });
    const r = await page.evaluate(() => window.probeResult);
    r.console = console_;
    r.fetched = fetched;
    results.push(r);
    await page.close();
  }

  if (asJson) {
    console.log(JSON.stringify({ chromium: browser.version(), flags: CHROMIUM_FLAGS, models, modelsFromBinary, wasmType, results }, null, 2));
  } else {
    console.log(`Chromium ${browser.version()} headless; face-api ${results[0]?.faceapiVersion}, tfjs ${results[0]?.tfVersion}`);
    console.log(`models from ${models}${modelsFromBinary ? '' : ' (the binary has no SSD weights embedded yet)'}; .wasm served as ${wasmType}`);
    console.log(`truth box ${JSON.stringify(truth)}\n`);
    const rows = [['backend', 'got', 'detector', 'faces', 'first ms', 'median ms', 'load ms', 'score', 'IoU', 'box']];
    for (const r of results) {
      const got = r.backend ?? 'FAILED';
      const dets = Object.entries(r.detectors ?? {});
      if (!dets.length) rows.push([r.wanted, got, '-', '-', '-', '-', '-', '-', '-', r.error ?? `setBackend=${r.setBackend}`]);
      for (const [name, d] of dets) {
        const b = d.boxes?.[0];
        rows.push([r.wanted, got, name, d.error ? 'ERR' : String(d.faces), String(d.firstMs ?? '-'), String(d.medianMs ?? '-'),
          String(d.loadMs ?? '-'), b ? b.score.toFixed(2) : '-', b ? iou(b).toFixed(2) : '-',
          d.error ? d.error.split('\n')[0] : b ? `${b.x},${b.y} ${b.w}x${b.h}` : '-']);
      }
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    for (const [i, row] of rows.entries()) {
      console.log(row.map((c, j) => c.padEnd(widths[j])).join('  ').trimEnd());
      if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
    }
    console.log();
    for (const r of results) {
      const extra = [`init ${r.initMs} ms`];
      if (r.backend === 'wasm') extra.push(`simd=${r.wasmSimd} threads=${r.wasmThreads}`);
      if (r.backend === 'webgl') extra.push(`WebGL${r.webglVersion} "${r.webglRenderer}"`);
      extra.push(`crossOriginIsolated=${r.crossOriginIsolated}`, `registered=[${r.registered}]`, `tensors left=${r.numTensors}`);
      console.log(`${r.wanted} → ${r.backend}: ${extra.join(', ')}`);
      for (const f of r.fetched) console.log(`    fetched ${f}`);
      for (const c of r.console) console.log(`    ${c.slice(0, 300)}`);
    }
  }
} finally {
  await browser?.close();
  server.kill('SIGTERM');
  await new Promise((r) => (server.exitCode !== null ? r() : server.once('exit', r)));
  rmSync(tmp, { recursive: true, force: true });
}
