// The frame code has one layout, described in src/seeing/framecode.rs; web/framecode.js
// stamps it and the server reads it. This checks the page's side against the Rust
// constants and the cells the Rust tests expect. Plain `node --test`.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FrameStamper, cellSize } from '../../web/framecode.js';

const rust = readFileSync(new URL('../../src/seeing/framecode.rs', import.meta.url), 'utf8');
const constant = (name) => Number(rust.match(new RegExp(`pub const ${name}: \\w+ = (\\d+);`))[1]);

/** The cells FrameStamper draws for its next frame on a width×height canvas: [x, y, size, white]. */
function stampedCells(stamper, width, height) {
  const cells = [];
  const ctx = {
    fillStyle: null,
    fillRect(x, y, w, h) { assert.equal(w, h, 'square cells'); cells.push([x, y, w, this.fillStyle === '#fff' ? 1 : 0]); },
  };
  const n = stamper.stamp(ctx, width, height, 0);
  return { n, cells };
}

test('cell size and cell count follow src/seeing/framecode.rs', () => {
  const [minCell, divisor, bits] = [constant('MIN_CELL'), constant('CELL_DIVISOR'), constant('BITS')];
  assert.deepEqual([minCell, divisor, bits], [8, 48, 16]);
  for (const width of [1, 160, 320, 383, 384, 640, 1280, 1920]) {
    assert.equal(cellSize(width), Math.max(minCell, Math.floor(width / divisor)), `width ${width}`);
  }
  const { cells } = stampedCells(new FrameStamper(), 640, 480);
  assert.equal(cells.length, 2 + bits + 1);
});

test('the stamped cells are the ones the server reads', () => {
  const stamper = new FrameStamper();
  stamper.next = 0xa5f0;
  const { n, cells } = stampedCells(stamper, 641, 481);
  assert.equal(n, 0xa5f0, 'stamp returns the number it drew');
  // The same cells as the_cells_follow_the_layout in src/seeing/framecode.rs.
  assert.deepEqual(cells.map((c) => c[3]), [1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
  const size = cellSize(641);
  cells.forEach(([x, y, s], i) => assert.deepEqual([x, y, s], [i * size, 481 - size, size]));
  // Odd parity count gets a white parity cell; numbers wrap at 65536.
  stamper.next = 0xffff;
  assert.equal(stampedCells(stamper, 320, 240).n, 0xffff);
  const next = stampedCells(stamper, 320, 240);
  assert.equal(next.n, 0);
  stamper.next = 1;
  assert.equal(stampedCells(stamper, 320, 240).cells.at(-1)[3], 1);
});
