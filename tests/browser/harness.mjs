// What the browser test, the floor bench and the backend probe share: a free
// loopback port, the flags headless Chromium needs on this kind of machine, and
// Chromium with a fake camera playing a Y4M file.
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

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
