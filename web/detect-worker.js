// The page's face detection, off the main thread: a module worker running face-api
// (tfjs 4.22.0 bundled) so a detection pass never stalls drawing, sending or the echo's
// frame callbacks. It picks the faster tfjs backend (WebAssembly or WebGL, by a short
// timed probe on the first frame) and runs TinyFaceDetector or SSD MobileNet v1.
//
// Messages in: {type: 'start', bitmap} once, then {type: 'detect', bitmap, settings};
// out: {type: 'ready', backend, probe}, {type: 'result', boxes, ms}, {type: 'error', message}.
import * as faceapi from '/vendor/face-api/face-api.esm.js';

const tf = faceapi.tf;
const MODELS = '/models/face-api';
const PROBE_PASSES = 2;

// face-api looks for a DOM; a worker has OffscreenCanvas and fetch instead.
faceapi.env.setEnv({
  Canvas: OffscreenCanvas,
  CanvasRenderingContext2D: OffscreenCanvasRenderingContext2D,
  Image: class {},
  ImageData,
  Video: class {},
  createCanvasElement: () => new OffscreenCanvas(1, 1),
  createImageElement: () => { throw new Error('no <img> in a worker'); },
  createVideoElement: () => { throw new Error('no <video> in a worker'); },
  fetch: (...args) => fetch(...args),
  readFile: () => { throw new Error('no files in a worker'); },
});

const NETS = { tiny: faceapi.nets.tinyFaceDetector, ssd: faceapi.nets.ssdMobilenetv1 };

function options({ detector, inputSize, scoreThreshold }) {
  return detector === 'ssd'
    ? new faceapi.SsdMobilenetv1Options({ minConfidence: scoreThreshold })
    : new faceapi.TinyFaceDetectorOptions({ inputSize, scoreThreshold });
}

/** Faces in an ImageBitmap (closed afterwards), as plain boxes. */
async function detect(bitmap, settings) {
  const input = tf.browser.fromPixels(bitmap);
  try {
    const found = await faceapi.detectAllFaces(input, options(settings));
    // face-api's Box keeps x/y/width/height behind getters: copy them out.
    return found.map(({ box, score }) => ({ x: box.x, y: box.y, width: box.width, height: box.height, score }));
  } finally {
    input.dispose();
  }
}

/**
 * Switches tfjs to `name`; true when it runs. (`setBackend` resolves false on
 * failure and leaves `getBackend()` claiming the new name, so check both.)
 */
async function useBackend(name) {
  try {
    const ok = await tf.setBackend(name);
    await tf.ready();
    return ok && tf.getBackend() === name;
  } catch {
    return false;
  }
}

/** ms per TinyFaceDetector pass on `bitmap`, after one warm-up pass. */
async function timePasses(bitmap) {
  const settings = { detector: 'tiny', inputSize: 416, scoreThreshold: 0.5 };
  const input = tf.browser.fromPixels(bitmap);
  try {
    await faceapi.detectAllFaces(input, options(settings));
    const started = performance.now();
    for (let i = 0; i < PROBE_PASSES; i++) await faceapi.detectAllFaces(input, options(settings));
    return (performance.now() - started) / PROBE_PASSES;
  } finally {
    input.dispose();
  }
}

async function start(bitmap) {
  tf.setWasmPaths('/vendor/tfjs-backend-wasm/');
  const probe = {};
  for (const name of ['wasm', 'webgl']) {
    if (!(await useBackend(name))) continue;
    // Weights live in the backend that loads them: load per backend tried.
    await Promise.all(Object.values(NETS).map((net) => net.loadFromUri(MODELS)));
    probe[name] = await timePasses(bitmap);
  }
  const ranked = Object.entries(probe).sort((a, b) => a[1] - b[1]);
  let backend = ranked.length ? ranked[0][0] : 'cpu';
  if (!(await useBackend(backend))) {
    backend = 'cpu';
    await useBackend(backend);
  }
  await Promise.all(Object.values(NETS).map((net) => net.loadFromUri(MODELS)));
  return { backend, probe };
}

onmessage = async ({ data }) => {
  try {
    if (data.type === 'start') {
      postMessage({ type: 'ready', ...(await start(data.bitmap)) });
    } else if (data.type === 'detect') {
      const started = performance.now();
      const boxes = await detect(data.bitmap, data.settings);
      postMessage({ type: 'result', boxes, ms: performance.now() - started });
    }
  } catch (err) {
    postMessage({ type: 'error', message: `${err.message ?? err}` });
  } finally {
    data.bitmap?.close(); // closing twice is harmless
  }
};
