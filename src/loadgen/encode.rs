//! VP8 encoding with libvpx for the clip that test peers and the load generator
//! loop, configured to give the same bytes on every run.
//!
//! libvpx's realtime mode picks its speed from how long frames take to encode, so
//! the same pictures come out differently sized from run to run: a clip of
//! ~1 200-byte frames goes from 1.3 to 1.9 RTP packets per frame with the load on
//! the machine, and A/B runs that each encode their own clip would compare
//! different loads. One thread, the good-quality deadline and a fixed speed make
//! it deterministic.

use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_ulong};
use std::{ptr, slice};

use vpx_sys::{
    VPX_DL_GOOD_QUALITY, VPX_ENCODER_ABI_VERSION, VPX_FRAME_IS_KEY, vp8e_enc_control_id, vpx_codec_control_,
    vpx_codec_ctx_t, vpx_codec_cx_pkt_kind, vpx_codec_destroy, vpx_codec_enc_cfg_t,
    vpx_codec_enc_config_default, vpx_codec_enc_init_ver, vpx_codec_encode, vpx_codec_err_t,
    vpx_codec_get_cx_data, vpx_codec_vp8_cx, vpx_image_t, vpx_img_fmt, vpx_img_wrap,
};

/// libvpx's speed (`cpu-used`) for the clip: fast, and fixed (see the module docs).
const SPEED: c_int = 8;

/// One encoded frame, as libvpx produced it.
pub struct Encoded {
    pub data: Vec<u8>,
    pub key: bool,
}

/// A single-threaded VP8 encoder whose output depends only on its input.
pub struct Vp8Encoder {
    ctx: vpx_codec_ctx_t,
    width: u32,
    height: u32,
}

fn check(err: vpx_codec_err_t, what: &str) -> anyhow::Result<()> {
    if err == vpx_codec_err_t::VPX_CODEC_OK { Ok(()) } else { anyhow::bail!("libvpx {what}: {err:?}") }
}

impl Vp8Encoder {
    /// `width` and `height` even; `bitrate_kbps` the rate control's target.
    pub fn new(width: u32, height: u32, fps: u32, bitrate_kbps: u32) -> anyhow::Result<Self> {
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) || width == 0 || height == 0 {
            anyhow::bail!("VP8 clip size must be even and non-zero, not {width}x{height}");
        }
        // SAFETY: a zeroed config and context are what the libvpx calls below fill in.
        let mut cfg: vpx_codec_enc_cfg_t = unsafe { MaybeUninit::zeroed().assume_init() };
        let mut ctx: vpx_codec_ctx_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: the interface is libvpx's static VP8 encoder; cfg is valid to write.
        check(unsafe { vpx_codec_enc_config_default(vpx_codec_vp8_cx(), &mut cfg, 0) }, "config")?;
        cfg.g_w = width;
        cfg.g_h = height;
        cfg.g_timebase.num = 1;
        cfg.g_timebase.den = fps as c_int;
        cfg.rc_target_bitrate = bitrate_kbps;
        cfg.g_threads = 1;
        cfg.g_lag_in_frames = 0;
        // SAFETY: ctx and cfg are valid for the call.
        check(
            unsafe {
                vpx_codec_enc_init_ver(&mut ctx, vpx_codec_vp8_cx(), &cfg, 0, VPX_ENCODER_ABI_VERSION as i32)
            },
            "encoder init",
        )?;
        // From here on, dropping the encoder destroys the context.
        let mut encoder = Vp8Encoder { ctx, width, height };
        // SAFETY: an initialised encoder context; VP8E_SET_CPUUSED takes an int.
        let err = unsafe {
            vpx_codec_control_(&mut encoder.ctx, vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int, SPEED)
        };
        check(err, "speed")?;
        Ok(encoder)
    }

    /// Encodes one I420 picture (`width`x`height`, planes packed), or flushes the
    /// encoder with `None`; returns the frames that came out.
    pub fn encode(&mut self, pts: i64, i420: Option<&[u8]>) -> anyhow::Result<Vec<Encoded>> {
        let (w, h) = (self.width as usize, self.height as usize);
        // SAFETY: zeroed, then filled by vpx_img_wrap over `i420`, which outlives the encode call.
        let mut image: vpx_image_t = unsafe { MaybeUninit::zeroed().assume_init() };
        let image_ptr = match i420 {
            Some(data) => {
                if data.len() < w * h + 2 * (w / 2) * (h / 2) {
                    anyhow::bail!("I420 picture of {} bytes is too small for {w}x{h}", data.len());
                }
                // SAFETY: data holds a whole w×h I420 picture; libvpx only reads it.
                let wrapped = unsafe {
                    vpx_img_wrap(
                        &mut image,
                        vpx_img_fmt::VPX_IMG_FMT_I420,
                        self.width,
                        self.height,
                        1,
                        data.as_ptr() as *mut u8,
                    )
                };
                if wrapped.is_null() {
                    anyhow::bail!("libvpx could not wrap a {w}x{h} picture");
                }
                &image as *const vpx_image_t
            }
            None => ptr::null(),
        };
        // SAFETY: an initialised context; image_ptr is null (flush) or a wrapped live picture.
        let err =
            unsafe { vpx_codec_encode(&mut self.ctx, image_ptr, pts, 1, 0, VPX_DL_GOOD_QUALITY as c_ulong) };
        check(err, "encode")?;
        let mut out = Vec::new();
        let mut iter = ptr::null();
        loop {
            // SAFETY: iterating the encoder's output; each packet stays valid until the next call.
            let packet = unsafe { vpx_codec_get_cx_data(&mut self.ctx, &mut iter) };
            if packet.is_null() {
                return Ok(out);
            }
            // SAFETY: non-null packets point at libvpx's packet; `frame` is the union member
            // for VPX_CODEC_CX_FRAME_PKT, the only kind read here.
            unsafe {
                if (*packet).kind == vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let frame = &(*packet).data.frame;
                    out.push(Encoded {
                        data: slice::from_raw_parts(frame.buf as *const u8, frame.sz as usize).to_vec(),
                        key: frame.flags & VPX_FRAME_IS_KEY != 0,
                    });
                }
            }
        }
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once.
        unsafe { vpx_codec_destroy(&mut self.ctx) };
    }
}
