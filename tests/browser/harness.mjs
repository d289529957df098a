// What the browser test and the backend probe share: a free loopback port, and
// the flags headless Chromium needs on this kind of machine.
import { createServer } from 'node:net';

/** Chromium flags for a headless run with no GPU, no network chatter, no first-run UI. */
export const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}
