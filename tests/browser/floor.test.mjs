// Echo − floor (web/floor.js) pairs the two paths' latencies by frame number: only
// frames both showed count, each as the echo's latency less the loopback's.
// Plain `node --test`.
import test from 'node:test';
import assert from 'node:assert/strict';
import { overFloor } from '../../web/floor.js';

test('echo − floor is per frame, over the frames both paths showed', () => {
  // Frame n: echo 40 + n ms, floor 30 ms, so echo − floor is 10 + n; frame 6 never
  // reached the floor and frame 9 not the echo.
  const echo = new Map([[1, 41], [2, 42], [3, 43], [4, 44], [5, 45], [6, 0]]);
  const floor = new Map([[5, 30], [4, 30], [3, 30], [2, 30], [1, 30], [9, 1000]]);
  assert.deepEqual(overFloor(echo, floor), { p50: 13, p95: 15, mean: 13, frames: 5 });
});

test('a loopback slower than the echo gives a negative difference; no common frame gives nulls', () => {
  assert.deepEqual(overFloor(new Map([[7, 20]]), new Map([[7, 25]])), { p50: -5, p95: -5, mean: -5, frames: 1 });
  assert.deepEqual(overFloor(new Map([[1, 20]]), new Map()), { p50: null, p95: null, mean: null, frames: 0 });
});
