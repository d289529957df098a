// The page's face detector, as the main thread sees it: settings from the page's
// controls, and one detection at a time sent to detect-worker.js with the frame as
// an ImageBitmap. The main thread only grabs the frame; the work happens off it.

export const DETECTORS = { tiny: 'TinyFaceDetector', ssd: 'SSD MobileNet v1' };

export class PageDetector {
  constructor() {
    this.settings = { detector: 'tiny', inputSize: 416, scoreThreshold: 0.5 };
    this.backend = null;          // 'wasm' | 'webgl' | 'cpu' once chosen
    this.probe = {};              // backend -> ms per pass in the start-up probe
    this.ready = null;
    this.waiting = null;          // {resolve, reject} of the message in flight
    this.worker = new Worker('/detect-worker.js', { type: 'module' });
    this.worker.onmessage = ({ data }) => {
      const waiting = this.waiting;
      this.waiting = null;
      if (data.type === 'error') waiting?.reject(new Error(data.message));
      else waiting?.resolve(data);
    };
    this.worker.onerror = (event) => {
      this.waiting?.reject(new Error(event.message || 'the detection worker failed to load'));
      this.waiting = null;
    };
  }

  /** Posts one message (transferring `bitmap`) and waits for the worker's answer. */
  ask(message, bitmap) {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.worker.postMessage({ ...message, bitmap }, [bitmap]);
    });
  }

  /**
   * Loads the models in the worker and picks the faster backend on a frame of
   * `video`. Called once; later calls return the same promise.
   */
  start(video) {
    this.ready ??= createImageBitmap(video)
      .then((bitmap) => this.ask({ type: 'start' }, bitmap))
      .then(({ backend, probe }) => {
        this.backend = backend;
        this.probe = probe;
        return backend;
      });
    return this.ready;
  }

  /** Changes detector, input size or threshold (from the page's controls). */
  configure(changes) {
    Object.assign(this.settings, changes);
  }

  get label() {
    return DETECTORS[this.settings.detector];
  }

  /** Whether the models are loaded and the backend chosen. */
  get started() {
    return this.backend !== null;
  }

  /** One pass on `bitmap` (an ImageBitmap, handed over to the worker): boxes in its pixels. */
  async detect(bitmap) {
    await this.ready;
    const { boxes } = await this.ask({ type: 'detect', settings: { ...this.settings } }, bitmap);
    return boxes;
  }
}
