// The closed loop's page logic without a browser (web/detections.js): messages
// built and checked, the ring of server detections, and which one is drawn over
// the echo frame shown. Plain `node --test`, no server, no Chromium.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  DetectionRing, MAX_BUFFERED_BYTES, MAX_FACES, MAX_STALE_MS, ReportPacer, canSend, pageDetecting, pageDetections,
  parseServerMessage, rtpDiff, scaleFaces,
} from '../../web/detections.js';

const detection = (rtpTs, faces = [{ x: 10, y: 20, w: 30, h: 40, score: 0.9 }], extra = {}) => ({
  rtpTs, frame: null, width: 320, height: 240, faces, inferMs: 3, ageMs: 5, ...extra,
});

test('page detections: face-api boxes to the wire format, bounded and finite', () => {
  const boxes = [
    { x: 10.04, y: 20.06, width: 30, height: 40, score: 0.91234 },
    { x: NaN, y: 0, width: 1, height: 1, score: 0.5 },
    { x: 0, y: 0, width: -1, height: 1, score: 0.5 },
    { x: 1, y: 2, width: 3, height: 4, score: 7 },
  ];
  assert.deepEqual(pageDetections(65535, 640, 480, boxes, 'ssd'), {
    type: 'detections', source: 'page', frame: 65535, detector: 'ssd', width: 640, height: 480,
    faces: [{ x: 10, y: 20.1, w: 30, h: 40, score: 0.912 }, { x: 1, y: 2, w: 3, h: 4, score: 1 }],
  });
  const many = Array.from({ length: 100 }, () => ({ x: 1, y: 1, width: 1, height: 1, score: 0.5 }));
  assert.equal(pageDetections(0, 10, 10, many).faces.length, MAX_FACES);
  assert.ok(JSON.stringify(pageDetections(0, 640, 480, many, 'tiny')).length < 16 * 1024, 'under the server limit');
  assert.deepEqual(pageDetecting(42), { type: 'detecting', frame: 42 });
});

test('reports are paced to the server detector rate, any pace while it is unknown', () => {
  const pacer = new ReportPacer();
  assert.ok(pacer.take(0, null) && pacer.take(10, null) && pacer.take(20, undefined), 'rate unknown');
  // 5 a second: passes every 70 ms, one reported in each 200 ms.
  const reported = Array.from({ length: 30 }, (_, i) => 1000 + i * 70).filter((t) => pacer.take(t, 5));
  assert.deepEqual(reported.slice(0, 4), [1000, 1210, 1420, 1630]);
  assert.ok(reported.length <= 11, `${reported.length}`);
});

test('server messages are checked, and anything odd is ignored', () => {
  const text = JSON.stringify({
    type: 'detections', source: 'server', rtp_ts: 4294967295, frame: 12, width: 320, height: 240,
    faces: [{ x: 1, y: 2, w: 3, h: 4, score: 0.5 }, { x: 'a' }, null], infer_ms: 4.5, age_ms: 12,
  });
  assert.deepEqual(parseServerMessage(text), {
    kind: 'detections',
    detection: {
      rtpTs: 4294967295, frame: 12, width: 320, height: 240,
      faces: [{ x: 1, y: 2, w: 3, h: 4, score: 0.5 }], inferMs: 4.5, ageMs: 12,
    },
  });
  const stats = parseServerMessage(JSON.stringify({
    type: 'stats', tap: { fps: 30 }, detect: {},
    agreement: { frames: 10, matched: 9, mean_iou: 0.6, mean_iou_calibrated: 0.8, page_only: 1, server_only: 2 },
  }));
  assert.deepEqual(stats.agreement,
    { frames: 10, matched: 9, meanIou: 0.6, meanIouCalibrated: 0.8, pageOnly: 1, serverOnly: 2 });
  assert.deepEqual(parseServerMessage('{"type":"stats"}').agreement,
    { frames: 0, matched: 0, meanIou: null, meanIouCalibrated: null, pageOnly: 0, serverOnly: 0 });
  assert.equal(parseServerMessage('{"type":"error","code":"too_many_faces","message":"x"}').code, 'too_many_faces');
  for (const bad of ['', 'nope', '42', 'null', '[]', '{"type":"hello"}', '{"type":"detections"}',
    '{"type":"detections","rtp_ts":-1,"width":1,"height":1,"faces":[]}',
    '{"type":"detections","rtp_ts":4294967296,"width":1,"height":1,"faces":[]}',
    '{"type":"detections","rtp_ts":1,"width":0,"height":1,"faces":[]}',
    '{"type":"detections","rtp_ts":1,"width":1,"height":1,"faces":{}}']) {
    assert.equal(parseServerMessage(bad), null, bad);
  }
  assert.equal(parseServerMessage(undefined), null);
  assert.equal(parseServerMessage(new ArrayBuffer(4)), null);
});

test('RTP timestamps compare across the 32-bit wrap', () => {
  assert.equal(rtpDiff(100, 90), 10);
  assert.equal(rtpDiff(90, 100), -10);
  assert.equal(rtpDiff(5, 4294967291), 10);
  assert.equal(rtpDiff(4294967291, 5), -10);
});

test('the detection drawn is the newest at or before the frame shown', () => {
  const ring = new DetectionRing(4);
  assert.equal(ring.pick(1000, 0), null, 'nothing yet');
  ring.push(detection(9000), 0);
  ring.push(detection(3000), 0);   // out of order arrivals are fine
  ring.push(detection(6000), 0);
  let picked = ring.pick(7000, 0);
  assert.equal(picked.detection.rtpTs, 6000);
  assert.equal(picked.ageMs, 1000 / 90);
  assert.equal(picked.fallback, false);
  assert.equal(ring.pick(9000, 0).ageMs, 0, 'the exact frame');
  assert.equal(ring.pick(2999, 0), null, 'every detection is after the frame shown');
  // Too far behind: not drawn.
  assert.equal(ring.pick(9000 + 90 * (MAX_STALE_MS + 1), 0), null);
  // Bounded: the oldest goes.
  ring.push(detection(12000), 0);
  ring.push(detection(15000), 0);
  assert.equal(ring.items.length, 4);
  assert.equal(ring.pick(10000, 0).detection.rtpTs, 6000, '9000, the first to arrive, was dropped');
  // Across the wrap: 4294967000 is before 500.
  const wrap = new DetectionRing();
  wrap.push(detection(4294967000), 0);
  wrap.push(detection(100), 0);
  wrap.push(detection(900), 0);
  assert.equal(wrap.pick(500, 0).detection.rtpTs, 100);
  assert.equal(wrap.pick(50, 0).detection.rtpTs, 4294967000);
  assert.ok(Math.abs(wrap.pick(50, 0).ageMs - 346 / 90) < 1e-9);
});

test('without an RTP timestamp the newest detection is drawn, and says so', () => {
  const ring = new DetectionRing();
  ring.push(detection(100), 1000);
  ring.push(detection(50), 1010);  // arrived last: the newest
  const picked = ring.pick(undefined, 1100);
  assert.equal(picked.detection.rtpTs, 50);
  assert.equal(picked.fallback, true);
  assert.equal(picked.ageMs, 90 + 5, 'since it arrived, plus the server\'s own age');
  assert.equal(ring.pick(null, 1010 + MAX_STALE_MS + 1), null, 'too old');
  ring.clear();
  assert.equal(ring.pick(undefined, 0), null);
});

test('faces scale from the server\'s frame to the picture shown', () => {
  const scaled = scaleFaces(detection(0, [{ x: 10, y: 20, w: 30, h: 40, score: 0.5 }]), 640, 480);
  assert.deepEqual(scaled, [{ x: 20, y: 40, w: 60, h: 80, score: 0.5 }]);
});

test('the page sends only on an open channel that is not backed up', () => {
  assert.equal(canSend(null), false);
  assert.equal(canSend({ readyState: 'connecting', bufferedAmount: 0 }), false);
  assert.equal(canSend({ readyState: 'open', bufferedAmount: 0 }), true);
  assert.equal(canSend({ readyState: 'open', bufferedAmount: MAX_BUFFERED_BYTES }), false);
  assert.equal(canSend({ readyState: 'closed', bufferedAmount: 0 }), false);
});
