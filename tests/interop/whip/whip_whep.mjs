#!/usr/bin/env node
// Interop client: Medooze's WHIP and WHEP clients (npm `whip-whep`, by the author of
// RFC 9725, unmodified) in Debian's headless Chromium publish to and watch a running
// face-echo, each with Chromium's own WebRTC stack.
//
//   node whip_whep.mjs --url http://127.0.0.1:PORT [--seconds 6] [--min-frames 30]
//
// The publisher page (origin http://127.0.0.1:PORT) POSTs a sendonly offer (fake camera,
// Chromium's choice of VP8) to /whip and trickles its candidates with PATCH. The WHEP URL
// is read from the 201's `Link: <...>; rel="urn:face-echo:whep"`. The player page, also
// on http://127.0.0.1:PORT, POSTs its recvonly offer to http://localhost:PORT: another
// origin, so a CORS preflight first, and the server must run with
// --allow-origin http://127.0.0.1:PORT. The player counts the frames Chromium decoded.
// Both stop with the library's stop() (DELETE). Prints one JSON line; exits 0 iff the
// player decoded at least --min-frames frames, /api/sessions showed the session as
// "signaling": "whip" with one viewer, and both DELETEs left no session behind.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    seconds: { type: 'string', default: '6' },
    'min-frames': { type: 'string', default: '30' },
    verbose: { type: 'boolean', short: 'v', default: false },
  },
});
if (!args.url) {
  console.error('usage: whip_whep.mjs --url http://127.0.0.1:PORT [--seconds N] [--min-frames N]');
  process.exit(2);
}
const base = args.url.replace(/\/$/, '');
const otherOrigin = base.replace('://127.0.0.1:', '://localhost:');
const minFrames = Number(args['min-frames']);
const log = (msg) => console.error(`whip_whep: ${msg}`);
const library = (name) => readFileSync(join(here, 'node_modules/whip-whep', name), 'utf8');

// Loads the library's ES module unmodified in the page, as `window[name]`.
async function loadClient(page, file, name) {
  await page.evaluate(async ([source, name]) => {
    const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    window[name] = (await import(url))[name];
  }, [library(file), name]);
}

const summary = { ok: false, client: 'whip-whep 1.2.0 (npm) in Chromium' };
let browser;
try {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      // TEST-ONLY: Chromium leaves loopback out of its host candidates; face-echo on
      // 127.0.0.1 takes only loopback ones, and this test must stay on loopback.
      '--allow-loopback-in-peer-connection',
    ],
  });
  const context = await browser.newContext();
  const consoleLines = [];
  const watchConsole = (page, who) => {
    page.on('console', (m) => consoleLines.push(`[${who} ${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[${who} pageerror] ${e.message}`));
  };

  // --- WHIP: publish from the server's own origin -------------------------------------
  const publisher = await context.newPage();
  watchConsole(publisher, 'whip');
  await publisher.goto(`${base}/healthz`);
  await loadClient(publisher, 'whip.js', 'WHIPClient');
  const whipResponse = publisher.waitForResponse((r) => r.url() === `${base}/whip` && r.request().method() === 'POST');
  await publisher.evaluate(async (endpoint) => {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 30 } });
    const pc = new RTCPeerConnection();
    pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
    window.client = new window.WHIPClient();
    window.pc = pc;
    await window.client.publish(pc, endpoint);
  }, `${base}/whip`);
  const created = await whipResponse;
  const headers = await created.allHeaders();
  summary.whip = { status: created.status(), location: headers.location, link: headers.link };
  const whep = /<([^>]+)>;\s*rel="urn:face-echo:whep"/.exec(headers.link ?? '');
  if (!whep) throw new Error(`no WHEP link in the WHIP response: ${JSON.stringify(headers)}`);
  const whepUrl = new URL(whep[1], otherOrigin).href;
  await publisher.waitForFunction(() => window.pc.connectionState === 'connected', null, { timeout: 15_000 });
  log(`published; WHEP URL ${whepUrl}`);

  // --- WHEP: watch from another origin (CORS) -----------------------------------------
  const player = await context.newPage();
  watchConsole(player, 'whep');
  await player.goto(`${base}/healthz`);
  await loadClient(player, 'whep.js', 'WHEPClient');
  await player.evaluate(async (endpoint) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    window.client = new window.WHEPClient();
    window.pc = pc;
    await window.client.view(pc, endpoint);
  }, whepUrl);
  await player.waitForFunction(() => window.pc.connectionState === 'connected', null, { timeout: 15_000 });
  log('watching');

  const decoded = () => player.evaluate(async () => {
    let frames = 0;
    let codec = null;
    const stats = await window.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        frames += s.framesDecoded ?? 0;
        codec = stats.get(s.codecId)?.mimeType ?? codec;
      }
    });
    return { frames, codec };
  });
  await new Promise((ok) => setTimeout(ok, Number(args.seconds) * 1000));
  summary.player = await decoded();
  const sessions = await (await fetch(`${base}/api/sessions`)).json();
  summary.server = sessions.map((s) => ({ signaling: s.signaling, state: s.state, packets_in: s.echo.packets_in,
    packets_out: s.echo.packets_out, viewers: s.viewers.length }));

  // --- DELETE both ---------------------------------------------------------------------
  await player.evaluate(() => window.client.stop());
  await publisher.evaluate(() => window.client.stop());
  let left = null;
  for (let i = 0; i < 30; i++) {
    left = await (await fetch(`${base}/api/sessions`)).json();
    if (left.length === 0) break;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  summary.after_delete = left.length;

  const session = summary.server[0];
  summary.ok = summary.whip.status === 201 && summary.player.frames >= minFrames
    && summary.server.length === 1 && session.signaling === 'whip' && session.viewers === 1
    && summary.after_delete === 0;
  if (!summary.ok || args.verbose) log(`console:\n${consoleLines.join('\n')}`);
} catch (err) {
  summary.error = String(err?.stack ?? err);
} finally {
  await browser?.close();
}
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
