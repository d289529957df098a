// Two nodes sharing a real redis-server (--cluster): the page opened on a full node
// is told `server_full` with a node that has room, goes there once (#retried=1),
// starts by itself and plays the echo. Runs once (not again in the --detect pass);
// skips with a message where redis-server is missing.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fakeCamera, freePort, launchWithFakeCamera, startPage } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = process.env.FACE_ECHO_BIN ?? join(repo, 'target/debug/face-echo');
const skip = process.env.FACE_ECHO_ARGS
  ? 'runs in the plain pass only'
  : spawnSync('redis-server', ['--version']).error ? 'redis-server is not installed (scripts/deps.sh test)' : false;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try { const value = await check(); if (value) return value; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

async function json(url) {
  const response = await fetch(url);
  assert.equal(response.status, 200, url);
  return response.json();
}

test('a full node sends the page to a node with room, which plays the echo', { skip, timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'face-echo-cluster-'));
  const y4m = fakeCamera(work, 'astronaut.png', 320, 240);
  const [redisPort, portA, portB] = [await freePort(), await freePort(), await freePort()];
  const [a, b] = [`http://127.0.0.1:${portA}`, `http://127.0.0.1:${portB}`];
  const children = [];
  const run = (command, args) => {
    const child = spawn(command, args, { stdio: 'ignore' });
    children.push(child);
    return child;
  };
  let context;
  try {
    run('redis-server', ['--port', `${redisPort}`, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
    const cluster = ['--cluster', `redis://127.0.0.1:${redisPort}`, '--cluster-ttl', '3'];
    run(bin, ['--listen', `127.0.0.1:${portA}`, '--node-url', a, '--max-sessions', '1', ...cluster]);
    run(bin, ['--listen', `127.0.0.1:${portB}`, '--node-url', b, ...cluster]);
    await eventually('both nodes in the directory', async () => (await json(`${a}/api/cluster`)).nodes?.length === 2, 20_000);

    // A's one slot taken by a load generator's publisher.
    run(bin, ['loadgen', '--url', `ws://127.0.0.1:${portA}/ws`, '--peers', '1', '--seconds', '90']);
    await eventually('A full', async () => (await json(`${a}/api/sessions`)).length === 1, 20_000);
    await eventually('B sees A full', async () => {
      const nodes = (await json(`${b}/api/cluster`)).nodes ?? [];
      return nodes.some((node) => node.url.startsWith(a) && node.slots === 1);
    }, 10_000);

    context = await launchWithFakeCamera(work, y4m);
    const page = context.pages()[0] ?? await context.newPage();
    await startPage(page, a);
    await eventually('the page on B', async () => page.url().startsWith(`${b}/`), 20_000);
    assert.match(page.url(), /retried=1/);
    const rendered = await eventually('the echo on B', async () => {
      const frames = await page.evaluate(() => window.faceEcho.echoFramesRendered);
      return frames >= 20 && frames;
    }, 60_000);
    const onB = await json(`${b}/api/sessions`);
    console.log(`sent from ${a} (full) to ${page.url()}: ${rendered} echo frames, B has ${onB.length} session(s)`);
    assert.equal(onB.length, 1);
    assert.ok(onB[0].echo.packets_out > 0, JSON.stringify(onB[0]));
  } finally {
    await context?.close().catch(() => {});
    for (const child of children) child.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }
});
