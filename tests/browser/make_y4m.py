"""Turns a photo into a short Y4M video for Chromium's fake camera.

usage: make_y4m.py PHOTO OUT.y4m [WIDTH HEIGHT FRAMES]

The photo is scaled to fit and centred on a grey frame (4:2:0, 30 fps). Each frame
shifts it by a pixel or two so the video is not static (VP8 then sends more than
one keyframe's worth of data).
"""
import sys

from PIL import Image


def to_i420(image):
    """RGB image -> (Y, U, V) bytes, BT.601 limited range."""
    y_plane = image.convert("YCbCr")  # Pillow's JPEG-style (full range) YCbCr
    y, cb, cr = y_plane.split()
    limited = lambda band, lo, hi: band.point(lambda v: lo + (v * (hi - lo) + 127) // 255)
    y = limited(y, 16, 235)
    w, h = image.size
    cb = limited(cb.resize((w // 2, h // 2), Image.BILINEAR), 16, 240)
    cr = limited(cr.resize((w // 2, h // 2), Image.BILINEAR), 16, 240)
    return y.tobytes(), cb.tobytes(), cr.tobytes()


def main():
    photo, out = sys.argv[1], sys.argv[2]
    width, height, frames = (int(a) for a in (sys.argv[3:6] or (640, 480, 30)))
    source = Image.open(photo).convert("RGB")
    scale = min(width / source.width, height / source.height) * 0.95
    fitted = source.resize((int(source.width * scale), int(source.height * scale)), Image.LANCZOS)
    with open(out, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            frame = Image.new("RGB", (width, height), (96, 96, 96))
            dx = (i % 10) - 5
            frame.paste(fitted, ((width - fitted.width) // 2 + dx, (height - fitted.height) // 2))
            f.write(b"FRAME\n")
            for plane in to_i420(frame):
                f.write(plane)


if __name__ == "__main__":
    main()
