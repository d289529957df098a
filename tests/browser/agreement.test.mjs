// The agreement between the page's detector and the server's, in Debian's headless
// Chromium with a photo of four people as the camera, against the real server with
// --decode-tap --detect: for each page detector (TinyFaceDetector, SSD MobileNet v1)
// a fresh session must pair at least half of the faces from the first compared
// frame on, compare only frames both detectors ran on, and compare most of the
// frames the page reported. It prints each detector's measured box convention
// against BlazeFace (the constants of `PageDetector::convention` come from here).
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  fakeCamera, freePort, launchWithFakeCamera, pageState, recordPage, startPage, startServer, tail, waitFor,
} from './harness.mjs';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = process.env.FACE_ECHO_BIN ?? join(repo, 'target/debug/face-echo');
const outDir = join(repo, 'target/e2e');
const FACES = 4;
const COMPARED_FRAMES = 12;

/** Matched faces over every face either side found. */
const share = (a) => a.matched / Math.max(1, a.matched + a.pageOnly + a.serverOnly);

test('both detectors find the same faces in the same frames (group photo, Tiny and SSD)', { timeout: 300_000 }, async () => {
  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'face-echo-agreement-'));
  const y4m = fakeCamera(work, 'group.jpg', 640, 480);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const serverLog = join(outDir, 'agreement-server.log');
  const server = await startServer(bin, ['--listen', `127.0.0.1:${port}`, '--decode-tap', '--detect'], base, serverLog);
  const consoleLines = [];
  let context;
  try {
    context = await launchWithFakeCamera(work, y4m);
    const page = context.pages()[0] ?? await context.newPage();
    recordPage(page, consoleLines);
    const snapshot = () => pageState(page);
    const describe = async () => `faceEcho=${JSON.stringify(await snapshot())}\nconsole:\n${consoleLines.join('\n')}\nserver log:\n${tail(serverLog)}`;

    for (const detector of ['tiny', 'ssd']) {
      // A fresh page and session per detector: its agreement holds that detector only.
      await startPage(page, base, describe, (p) => p.selectOption('#detector', detector));
      const samples = [];
      let serverFaces = 0;
      const s = await waitFor(`${COMPARED_FRAMES} frames compared with ${detector}`, async () => {
        const now = await snapshot();
        serverFaces = Math.max(serverFaces, now.serverFaces ?? 0);
        if (now.agreement.frames > 0) samples.push(now.agreement);
        return now.agreement.frames >= COMPARED_FRAMES ? now : null;
      }, 150_000, describe);
      const fe = await snapshot();
      const listed = (await (await fetch(`${base}/api/sessions`)).json()).find((x) => x.id === s.session);
      const agreement = listed.agreement;
      console.log(`${detector}: page ${fe.maxFaces} faces, server ${serverFaces}, reported ${fe.reportedFrames} frames; `
        + `agreement ${JSON.stringify(agreement)}; first compared ${JSON.stringify(samples[0])}`);
      assert.equal(fe.detector, detector);
      assert.ok(fe.maxFaces >= FACES - 1, `the page finds the faces: ${fe.maxFaces}`);
      assert.ok(serverFaces >= FACES - 1, `the server finds the faces: ${serverFaces}`);
      // From the first compared frame on, at least half the faces pair.
      for (const sample of samples) {
        assert.ok(share(sample) >= 0.5, `${detector}: ${JSON.stringify(sample)} of ${JSON.stringify(samples)}`);
      }
      // Most frames the page reported were detected on by the server too (a pass or
      // two may still be in flight).
      assert.ok(agreement.frames >= 0.5 * (fe.reportedFrames - 2), `compared ${agreement.frames} of ${fe.reportedFrames} reported`);
      // Only frames both ran on: a frame of "nothing found" would show as a side's only faces.
      assert.ok(agreement.page_only + agreement.server_only <= agreement.matched, JSON.stringify(agreement));
      // The convention was measured on these pairs, and mapping to it brings the boxes closer.
      assert.ok(agreement.convention[detector].pairs >= agreement.matched, JSON.stringify(agreement.convention));
      assert.ok(agreement.mean_iou_calibrated > agreement.mean_iou, `calibrated ${agreement.mean_iou_calibrated} vs raw ${agreement.mean_iou}`);
      // The panel says it in words.
      const panel = await page.textContent('#agreement');
      assert.match(panel, /frames compared · \d+ faces matched · page only \d+ · server only \d+ · mean IoU/);
      await page.click('#stop');
    }
  } finally {
    await context?.close();
    server.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  }
});
