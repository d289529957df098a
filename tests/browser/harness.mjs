// What the browser tests, the benches and the backend probe share: a free
// loopback port, the flags headless Chromium needs on this kind of machine,
// Chromium with a fake camera playing a Y4M file made from a test photo, and the
// server started with its log and waited for.
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');

/** `work`/camera.y4m, 30 fps, made from `photo` of tests/fixtures/ at `width`×`height`
 *  (make_y4m.py); its path. */
export function fakeCamera(work, photo, width, height) {
  const y4m = join(work, 'camera.y4m');
  execFileSync('python3', [join(here, 'make_y4m.py'), join(repo, 'tests/fixtures', photo), y4m, `${width}`, `${height}`, '30']);
  return y4m;
}

/** Waits up to 20 s for the server at `base` to answer /healthz; throws with `describe()`. */
export function untilHealthy(base, describe = () => '') {
  return waitFor('the server', async () => {
    try { return (await fetch(`${base}/healthz`)).ok; } catch { return false; }
  }, 20_000, describe);
}

/** Starts the server `bin` with `args`, its log (stderr, RUST_LOG face_echo=debug
 *  unless set) in `log`; returns it once it answers at `base` (killed if it never does). */
export async function startServer(bin, args, base, log) {
  const server = spawn(bin, args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'face_echo=debug,info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  server.stderr.pipe(createWriteStream(log));
  try {
    await untilHealthy(base, () => tail(log));
  } catch (err) {
    server.kill('SIGTERM');
    throw err;
  }
  return server;
}

/** Chromium flags for a headless run with no GPU, no network chatter, no first-run UI. */
export const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];

/** Debian's Chromium, headless, profile in `work`, its camera playing `y4m`;
 *  `extraArgs` for more flags. */
export function launchWithFakeCamera(work, y4m, extraArgs = []) {
  return chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      ...CHROMIUM_FLAGS,
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-video-capture=${y4m}`, '--allow-loopback-in-peer-connection',
      ...extraArgs,
    ],
  });
}

/** Keeps what `page` logs, throws and fails to fetch in `lines` (tagged `label`), for
 *  a failing test's message. */
export function recordPage(page, lines, label = '') {
  const tag = label ? `${label} ` : '';
  page.on('console', (m) => lines.push(`[${tag}${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[${tag}pageerror] ${e.message}`));
  page.on('requestfailed', (r) => lines.push(`[${tag}request failed] ${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) lines.push(`[${tag}HTTP ${r.status()}] ${r.url()}`); });
}

/** Opens the page at `base` and presses Start once app.js runs (`window.faceEcho`);
 *  `before(page)` may set controls first. If app.js has not run within 20 s, says so
 *  with `describe()` and reloads once; throws if it still does not. */
export async function startPage(page, base, describe = async () => '', before = async () => {}) {
  await page.goto(base);
  const scriptRuns = () => page.waitForFunction(() => window.faceEcho, null, { timeout: 20_000 });
  await scriptRuns()
    .catch(async (err) => {
      console.warn(`the page's script did not run (${err.message}); reloading once: ${await describe()}`);
      await page.reload();
      await scriptRuns();
    })
    .catch(async (err) => { throw new Error(`the page's script never ran (${err.message}): ${await describe()}`); });
  await before(page);
  await page.click('#start');
}

/** The page's state (`window.faceEcho`), or null while app.js has set none. */
export async function pageState(page) {
  return JSON.parse(await page.evaluate(() => JSON.stringify(window.faceEcho ?? null)));
}

/** A TCP port free on 127.0.0.1 right now. */
function freeTcpPort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

/** Whether UDP `port` on 127.0.0.1 is free right now. */
function udpFree(port) {
  return new Promise((ok) => {
    const probe = createSocket('udp4');
    probe.once('error', () => ok(false));
    probe.bind(port, '127.0.0.1', () => probe.close(() => ok(true)));
  });
}

/** A port free on 127.0.0.1 for TCP and UDP right now: the server's media takes the
 *  HTTP port's number, on UDP. */
export async function freePort() {
  for (;;) {
    const port = await freeTcpPort();
    if (await udpFree(port)) return port;
  }
}

/** Polls `check` every 250 ms until it returns something truthy (returned), or
 *  throws after `timeoutMs` with what `describe` says. */
export async function waitFor(what, check, timeoutMs, describe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${await describe()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The last `lines` lines of the file at `path` (a server log). */
export function tail(path, lines = 40) {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n') : '(no log)';
}
