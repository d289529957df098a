//! VP8 decoding with libvpx, through the `vpx_sys` binding (`env-libvpx-sys`).
//!
//! The decoder is not `Send` (libvpx context with raw pointers); it lives on the
//! tap's own thread, never on the async runtime.

use std::mem::MaybeUninit;
use std::ptr;

use crate::seeing::frame::I420Frame;
use vpx_sys::{
    VPX_DECODER_ABI_VERSION, vpx_codec_ctx_t, vpx_codec_dec_cfg_t, vpx_codec_dec_init_ver, vpx_codec_decode,
    vpx_codec_destroy, vpx_codec_err_t, vpx_codec_get_frame, vpx_codec_vp8_dx, vpx_img_fmt,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

pub struct Vp8Decoder {
    ctx: vpx_codec_ctx_t,
}

impl Vp8Decoder {
    pub fn new() -> Result<Self, DecodeError> {
        // SAFETY: a zeroed context is what vpx_codec_dec_init_ver expects to fill in.
        let mut ctx: vpx_codec_ctx_t = unsafe { MaybeUninit::zeroed().assume_init() };
        let cfg = vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 };
        // SAFETY: ctx and cfg are valid for the call; the interface is libvpx's static VP8 decoder.
        let err = unsafe {
            vpx_codec_dec_init_ver(&mut ctx, vpx_codec_vp8_dx(), &cfg, 0, VPX_DECODER_ABI_VERSION as i32)
        };
        if err != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(DecodeError(format!("libvpx VP8 decoder init failed: {err:?}")));
        }
        Ok(Vp8Decoder { ctx })
    }

    /// Decodes one frame; `Ok(None)` when libvpx produced no picture for it.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Option<I420Frame>, DecodeError> {
        let len = u32::try_from(frame.len()).map_err(|_| DecodeError("frame too large".into()))?;
        // SAFETY: data/len describe a live slice; libvpx copies what it keeps.
        let err = unsafe { vpx_codec_decode(&mut self.ctx, frame.as_ptr(), len, ptr::null_mut(), 0) };
        if err != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(DecodeError(format!("libvpx: {err:?}")));
        }
        let mut iter = ptr::null();
        let mut last = None;
        loop {
            // SAFETY: iterating the decoder's output; the image stays valid until the next decode.
            let image = unsafe { vpx_codec_get_frame(&mut self.ctx, &mut iter) };
            if image.is_null() {
                break;
            }
            // SAFETY: non-null image from libvpx.
            let image = unsafe { &*image };
            if image.fmt != vpx_img_fmt::VPX_IMG_FMT_I420 {
                return Err(DecodeError(format!("unexpected image format {:?}", image.fmt)));
            }
            let (w, h) = (image.d_w as usize, image.d_h as usize);
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let mut data = Vec::with_capacity(w * h + 2 * cw * ch);
            for (plane, (pw, ph)) in [(0, (w, h)), (1, (cw, ch)), (2, (cw, ch))] {
                let stride = image.stride[plane] as usize;
                for row in 0..ph {
                    // SAFETY: libvpx planes hold `ph` rows of `stride >= pw` bytes.
                    let line =
                        unsafe { std::slice::from_raw_parts(image.planes[plane].add(row * stride), pw) };
                    data.extend_from_slice(line);
                }
            }
            last = Some(I420Frame { width: w as u32, height: h as u32, data });
        }
        Ok(last)
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: ctx was initialised in new() and is destroyed once.
        unsafe {
            vpx_codec_destroy(&mut self.ctx);
        }
    }
}
