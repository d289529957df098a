// Bench: what ICE-TCP costs in glass-to-glass latency, against UDP, with and without
// loss, in the same run. Not a test; numbers for BENCHMARKS.md and the deployment
// docs. Run by hand (as root, or where `unshare -rn` is allowed; needs nftables):
//
//   node tests/browser/loss-bench.mjs [--json]
//   env: FACE_ECHO_BIN (default target/debug/face-echo), BENCH_SECONDS=20,
//        BENCH_LOSS=3 (percent), FACE_ECHO_SIZE=320x240
//
// Each case runs in a network namespace of its own (a veth address, 10.99.0.1), where
// nftables drops what the case says: nothing, BENCH_LOSS % of the media port's UDP
// datagrams, or every UDP datagram (so the page falls back to ICE-TCP on
// `--tcp-port`) and BENCH_LOSS % of that port's TCP segments. One page, one
// session, the fake camera at 30 fps; after 30 echoed frames, the page's echo
// latency (from the frame codes) is read every 4 s; the medians of the windows'
// p50 and p95 are printed with the echo's frame rate, and every frame's latency is
// drawn as a distribution per case in target/bench/loss-latency.svg.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fakeCamera, launchWithFakeCamera, pageState, startPage, untilHealthy, waitFor } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = process.env.FACE_ECHO_BIN ?? join(repo, 'target/debug/face-echo');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const LOSS = Number(process.env.BENCH_LOSS ?? 3);
const [WIDTH, HEIGHT] = (process.env.FACE_ECHO_SIZE ?? '320x240').split('x').map(Number);
const IP = '10.99.0.1';
const PORT = 18080;
const TCP_PORT = 18443;
const WINDOW_MS = 4000;

const drop = (what) => `nft 'add rule inet bench out ${what} drop'`;
const CASES = {
  'udp': [],
  [`udp, ${LOSS} % loss`]: [drop(`udp dport ${PORT} numgen random mod 100 < ${LOSS}`), drop(`udp sport ${PORT} numgen random mod 100 < ${LOSS}`)],
  'tcp': [drop('meta l4proto udp')],
  [`tcp, ${LOSS} % loss`]: [drop('meta l4proto udp'), drop(`tcp dport ${TCP_PORT} numgen random mod 100 < ${LOSS}`), drop(`tcp sport ${TCP_PORT} numgen random mod 100 < ${LOSS}`)],
};

const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? v[Math.floor((v.length - 1) / 2)] : null;
};
const round = (x) => (Number.isFinite(x) ? Math.round(x) : null);

/** The cases' echo latencies as an SVG: for each, the share of frames (y) that came
 *  back within x ms (a cumulative distribution, one line per case). */
function distributionSvg(results) {
  const [w, h, left, right, top, bottom] = [680, 360, 60, 190, 40, 50];
  const cases = results.filter((r) => r.latencies_ms?.length);
  const xmax = Math.max(50, ...cases.flatMap((r) => r.latencies_ms)) * 1.05;
  const px = (ms) => left + (ms / xmax) * (w - left - right);
  const py = (share) => top + (1 - share) * (h - top - bottom);
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="${(w - right + left) / 2}" y="22" text-anchor="middle" font-size="14">Echo latency, headless Chromium: share of frames within x ms</text>`];
  for (let i = 0; i <= 4; i++) {
    out.push(`<line x1="${left}" x2="${w - right}" y1="${py(i / 4)}" y2="${py(i / 4)}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${py(i / 4) + 4}" text-anchor="end">${i * 25} %</text>`);
  }
  const step = xmax > 200 ? 50 : 20;
  for (let ms = 0; ms <= xmax; ms += step) {
    out.push(`<text x="${px(ms)}" y="${h - bottom + 16}" text-anchor="middle">${ms}</text>`);
  }
  out.push(`<text x="${(w - right + left) / 2}" y="${h - 10}" text-anchor="middle">echo latency, ms</text>`);
  cases.forEach((r, i) => {
    const v = [...r.latencies_ms].sort((a, b) => a - b);
    const points = v.map((ms, k) => `${px(ms).toFixed(1)},${py((k + 1) / v.length).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${points}" fill="none" stroke="${colours[i % colours.length]}" stroke-width="2"/>`,
      `<text x="${w - right + 10}" y="${top + 14 + 18 * i}" fill="${colours[i % colours.length]}">${r.case} (${v.length} frames)</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** One case, inside its namespace: the JSON line the outer run reads. */
async function runCase(name) {
  const work = mkdtempSync(join(tmpdir(), 'face-echo-loss-'));
  const y4m = fakeCamera(work, 'astronaut.png', WIDTH, HEIGHT);
  const base = `http://${IP}:${PORT}`;
  const server = spawn(bin, ['--listen', `${IP}:${PORT}`, '--tcp-port', `${TCP_PORT}`], { stdio: 'ignore', env: { ...process.env, RUST_LOG: 'warn' } });
  let context;
  try {
    await untilHealthy(base);
    context = await launchWithFakeCamera(work, y4m, [`--unsafely-treat-insecure-origin-as-secure=${base}`]);
    const page = context.pages()[0] ?? await context.newPage();
    const snapshot = () => pageState(page);
    await startPage(page, base);
    await waitFor('30 echoed frames', async () => (await snapshot()).echoFramesRendered >= 30, 60_000,
      async () => JSON.stringify(await snapshot()));
    const windows = [];
    const byFrame = new Map(); // every frame's echo latency over the run, for the distribution
    const first = await snapshot();
    const started = Date.now();
    for (let t = 0; t < SECONDS * 1000; t += WINDOW_MS) {
      await new Promise((r) => setTimeout(r, WINDOW_MS));
      const now = await snapshot();
      windows.push(now.latencyMs);
      for (const [frame, ms] of now.latencyFrames ?? []) byFrame.set(frame, ms);
    }
    const last = await snapshot();
    const session = (await (await fetch(`${base}/api/sessions`)).json())[0];
    return {
      case: name,
      transport: session?.transport ?? null,
      p50_ms: round(median(windows.map((w) => w.p50))),
      p95_ms: round(median(windows.map((w) => w.p95))),
      echo_fps: Number(((last.echoFramesRendered - first.echoFramesRendered) / ((Date.now() - started) / 1000)).toFixed(1)),
      nacks_received: session?.retransmit?.nacks_received ?? null,
      latencies_ms: [...byFrame.values()],
    };
  } finally {
    await context?.close().catch(() => {});
    server.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.env.LOSS_BENCH_CASE) {
  console.log(JSON.stringify(await runCase(process.env.LOSS_BENCH_CASE)));
  process.exit(0);
}

const flags = ['-n', '-rn'].find((f) => spawnSync('unshare', [f, 'true']).status === 0);
if (!flags) throw new Error('no network namespace allowed here (unshare -n and -rn both refused)');
const results = [];
for (const [name, rules] of Object.entries(CASES)) {
  const setup = [
    'set -e', 'ip link set lo up', 'ip link add fe0 type veth peer name fe1',
    `ip addr add ${IP}/24 dev fe0`, 'ip link set fe0 up', 'ip link set fe1 up',
    'nft add table inet bench', "nft add chain inet bench out '{ type filter hook output priority 0; }'",
    ...rules, `exec node ${fileURLToPath(import.meta.url)}`,
  ].join('\n');
  const run = spawnSync('unshare', [flags, 'bash', '-c', setup], {
    env: { ...process.env, LOSS_BENCH_CASE: name }, encoding: 'utf8', timeout: (SECONDS + 120) * 1000,
  });
  const line = run.stdout.trim().split('\n').pop();
  let result;
  try { result = JSON.parse(line); } catch { result = { case: name, error: (run.stderr || line || '').slice(-400) }; }
  results.push(result);
  if (!process.argv.includes('--json')) console.log(JSON.stringify({ ...result, latencies_ms: undefined }));
}
const chart = join(repo, 'target/bench/loss-latency.svg');
mkdirSync(dirname(chart), { recursive: true });
writeFileSync(chart, distributionSvg(results));
console.error(`bench: latency distributions in ${chart}`);
if (process.argv.includes('--json')) console.log(JSON.stringify(results));
else {
  console.log(`\n| case | transport | echo p50 | echo p95 | echo fps | NACKs |\n|---|---|---|---|---|---|`);
  for (const r of results) console.log(`| ${r.case} | ${r.transport} | ${r.p50_ms} ms | ${r.p95_ms} ms | ${r.echo_fps} | ${r.nacks_received} |`);
}
