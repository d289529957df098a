// The page on a network that drops every UDP datagram (as many office, hotel and
// school networks do): in a network namespace of its own, where nftables drops all
// UDP, headless Chromium reaches the server over ICE-TCP on the HTTP port, and the
// echo plays, then a viewer's page plays the same stream. The namespace has a veth
// address (10.99.0.1): Chromium pairs no ICE-TCP candidate on loopback.
//
// Run as a test, this file re-runs itself inside `unshare -n` (or `-rn`) with the
// namespace set up; where neither is allowed it says so and skips.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  fakeCamera, freePort, launchWithFakeCamera, pageState, recordPage, startPage, startServer, tail, waitFor,
} from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = process.env.FACE_ECHO_BIN ?? join(repo, 'target/debug/face-echo');
const outDir = join(repo, 'target/e2e');
const IP = '10.99.0.1';
const NAMESPACE = `
set -e
ip link set lo up
ip link add fe0 type veth peer name fe1
ip addr add ${IP}/24 dev fe0
ip link set fe0 up
ip link set fe1 up
nft add table inet blocked
nft add chain inet blocked out '{ type filter hook output priority 0; }'
nft add rule inet blocked out meta l4proto udp counter drop
`;


/** UDP datagrams the namespace's firewall dropped so far. */
function udpDropped() {
  const chain = execFileSync('nft', ['list', 'chain', 'inet', 'blocked', 'out'], { encoding: 'utf8' });
  return Number(/counter packets (\d+)/.exec(chain)?.[1] ?? NaN);
}

if (process.env.FACE_ECHO_UDP_BLOCKED !== '1') {
  test('the page with all UDP dropped (in a network namespace of its own)', { timeout: 200_000 }, (t) => {
    const flags = ['-n', '-rn'].find((f) => spawnSync('unshare', [f, 'true']).status === 0);
    if (!flags) {
      t.skip('this kernel allows no network namespace here (unshare -n and -rn both refused)');
      return;
    }
    assert.equal(spawnSync('nft', ['--version']).status, 0, 'nftables (nft) is needed: scripts/deps.sh test installs it');
    const run = spawnSync('unshare', [flags, 'bash', '-c', `${NAMESPACE}\nexec node --test-reporter=spec ${fileURLToPath(import.meta.url)}`], {
      env: { ...process.env, FACE_ECHO_UDP_BLOCKED: '1' },
      stdio: 'inherit',
      timeout: 190_000,
    });
    assert.equal(run.status, 0, `the run in the namespace failed (${run.status ?? run.signal})`);
  });
} else {
  test('Chromium with no UDP connects over ICE-TCP and plays the echo, and a viewer too', { timeout: 180_000 }, async () => {
    mkdirSync(outDir, { recursive: true });
    const work = mkdtempSync(join(tmpdir(), 'face-echo-udp-blocked-'));
    const y4m = fakeCamera(work, 'astronaut.png', 320, 240);
    const port = await freePort();
    const base = `http://${IP}:${port}`;
    const serverLog = join(outDir, 'server-udp-blocked.log');
    const server = await startServer(bin, ['--listen', `${IP}:${port}`], base, serverLog);
    const consoleLines = [];
    let context;
    try {
      assert.equal(udpDropped(), 0, 'nothing dropped before the page');

      // Not localhost: the camera needs the origin treated as secure.
      context = await launchWithFakeCamera(work, y4m, [`--unsafely-treat-insecure-origin-as-secure=${base}`]);
      const page = context.pages()[0] ?? await context.newPage();
      recordPage(page, consoleLines);
      const describe = async () => `faceEcho=${JSON.stringify(await pageState(page))}\nconsole:\n${consoleLines.join('\n')}\nserver log:\n${tail(serverLog)}`;
      await startPage(page, base, describe);
      const fe = await waitFor('30 echoed frames', async () => {
        const s = await pageState(page);
        return s.echoFramesRendered >= 30 && s.latencyMs.samples >= 30 ? s : null;
      }, 60_000, describe);
      assert.equal(fe.state, 'connected');

      const dropped = udpDropped();
      assert.ok(dropped > 0, 'Chromium tried UDP first, and the firewall dropped it');
      const mine = (await (await fetch(`${base}/api/sessions`)).json()).find((s) => s.id === fe.session);
      assert.ok(mine, `session ${fe.session} listed`);
      assert.equal(mine.transport, 'tcp', JSON.stringify(mine));
      assert.equal(mine.media.tcp.port, port, 'ICE-TCP on the HTTP port');
      const { packets_in: received, packets_on_plane: onPlane, plane } = mine.echo;
      assert.ok(received > 0 && onPlane === received, `every packet on the plane: ${JSON.stringify(mine.echo)}`);
      assert.equal(plane.unprotect_failed, 0, JSON.stringify(plane));
      assert.ok(plane.rtcp_in > 0 && plane.rtcp_out > 0, `RTCP both ways: ${JSON.stringify(plane)}`);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /face_echo_sessions_transport\{transport="tcp"\} 1/);
      console.log(`over ICE-TCP (${dropped} UDP datagrams dropped): echo latency ${JSON.stringify(fe.latencyMs)}, `
        + `tcp ${JSON.stringify(mine.media.tcp.stats)}`);

      // A viewer from the same network: its own PeerConnection, over TCP too.
      const share = await page.getAttribute('#share', 'href');
      const viewer = await context.newPage();
      recordPage(viewer, consoleLines, 'viewer');
      await viewer.goto(`${base}${share}`);
      await waitFor('the viewer to render 30 frames', async () => {
        const v = await viewer.evaluate(() => window.faceEchoViewer);
        return v?.frames >= 30 ? v : null;
      }, 60_000, describe);
      const listed = (await (await fetch(`${base}/api/sessions`)).json()).find((s) => s.id === fe.session);
      assert.deepEqual(listed.viewers.map((v) => v.transport), ['tcp'], JSON.stringify(listed.viewers));
      await viewer.close();
    } finally {
      await context?.close().catch(() => {});
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
      rmSync(work, { recursive: true, force: true });
    }
  });
}
