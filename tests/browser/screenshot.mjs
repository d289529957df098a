// Takes docs/screenshot.png: the page in headless Chromium with the fake camera (a
// photo of a face), after some seconds of echo, with the server's own view on.
// Not a test. Run by hand: node tests/browser/screenshot.mjs
//   env: FACE_ECHO_BIN (default target/release/face-echo)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fakeCamera, freePort, launchWithFakeCamera, startPage, untilHealthy, waitFor } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = process.env.FACE_ECHO_BIN ?? join(repo, 'target/release/face-echo');
const work = mkdtempSync(join(tmpdir(), 'face-echo-screenshot-'));
const y4m = fakeCamera(work, 'astronaut.png', 640, 480);
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const server = spawn(bin, ['--listen', `127.0.0.1:${port}`, '--decode-tap', '--detect'], { stdio: 'ignore' });
let context;
try {
  await untilHealthy(base);
  context = await launchWithFakeCamera(work, y4m);
  const page = context.pages()[0] ?? await context.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await startPage(page, base);
  await waitFor('30 echoed frames', () => page.evaluate(() => (window.faceEcho?.echoFramesRendered ?? 0) >= 30), 60_000, () => '');
  await waitFor("the page's own detections", () => page.evaluate(() => (window.faceEcho?.detections ?? 0) >= 20), 120_000, () => '');
  await page.waitForTimeout(3000);
  await page.screenshot({ path: join(repo, 'docs/screenshot.png'), fullPage: true });
  console.log('wrote docs/screenshot.png');
} finally {
  await context?.close();
  server.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
