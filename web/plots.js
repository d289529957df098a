// Live plots of the last 60 s, one small canvas per series, plain 2D canvas (no
// library): a line, the latest value and the window's maximum as the scale.

const WINDOW_S = 60;

export class Plot {
  /** `name` and `unit` label the plot; `colour` draws its line. */
  constructor(container, name, unit, colour) {
    this.name = name;
    this.unit = unit;
    this.colour = colour;
    this.points = [];          // [seconds, value]
    const figure = document.createElement('div');
    figure.className = 'plot';
    this.canvas = document.createElement('canvas');
    this.canvas.width = 300;
    this.canvas.height = 90;
    this.canvas.dataset.series = name;
    figure.append(this.canvas);
    container.append(figure);
  }

  /** Adds a sample (null values leave a gap) and redraws. */
  push(value, now = performance.now() / 1000) {
    this.points.push([now, Number.isFinite(value) ? value : null]);
    while (this.points.length && now - this.points[0][0] > WINDOW_S) this.points.shift();
    this.draw(now);
  }

  /** The latest non-null value. */
  latest() {
    for (let i = this.points.length - 1; i >= 0; i--) if (this.points[i][1] !== null) return this.points[i][1];
    return null;
  }

  draw(now) {
    const { width: w, height: h } = this.canvas;
    const ctx = this.canvas.getContext('2d');
    const top = 16;
    const values = this.points.map(([, v]) => v).filter((v) => v !== null);
    const max = Math.max(1e-9, ...values) * 1.1;
    ctx.fillStyle = '#1b1b1b';
    ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = '#333';
    ctx.beginPath();
    ctx.moveTo(0, h - 0.5);
    ctx.lineTo(w, h - 0.5);
    ctx.stroke();
    ctx.strokeStyle = this.colour;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let drawing = false;
    for (const [t, v] of this.points) {
      if (v === null) { drawing = false; continue; }
      const x = w - ((now - t) / WINDOW_S) * w;
      const y = h - (v / max) * (h - top);
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
    }
    ctx.stroke();
    const latest = this.latest();
    ctx.fillStyle = '#ddd';
    ctx.font = '11px sans-serif';
    const shown = latest === null ? '–' : latest >= 100 ? Math.round(latest) : latest.toFixed(1);
    ctx.fillText(`${this.name}: ${shown} ${this.unit}   (max ${(max / 1.1).toFixed(1)}, 60 s)`, 4, 12);
  }
}
