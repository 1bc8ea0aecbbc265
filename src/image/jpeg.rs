//! JPEG decoding by libjpeg-turbo, the decoder Pillow and torchvision use, so a JPEG's pixels are the ones a
//! researcher's PyTorch pipeline sees (`Image.open(f).convert("RGB")`): the accurate integer IDCT, fancy
//! upsampling, libjpeg's YCbCr→RGB. Grayscale becomes RGB by repeating the channel; CMYK (and YCCK) is read with
//! Pillow's convention (Adobe polarity, always) and converted with Pillow's formula. The EXIF orientation is not
//! applied: Pillow's `Image.open` does not apply it either (`ImageOps.exif_transpose` does, on request).
//!
//! libjpeg warnings (corrupt data it can decode past) are ignored, as Pillow ignores them; data cut before the
//! end-of-image marker is refused by the caller before decoding, as Pillow refuses it.

use std::ffi::CStr;

use turbojpeg_sys as tj;

/// A libjpeg-turbo decompressor, destroyed when dropped.
struct Handle(tj::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

impl Handle {
    fn new() -> Result<Handle, String> {
        // SAFETY: tj3Init has no preconditions; a null handle is checked.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if handle.is_null() {
            return Err("cannot start the JPEG decoder (out of memory?)".into());
        }
        Ok(Handle(handle))
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: a valid handle and a parameter of the TJPARAM enumeration.
        unsafe { tj::tj3Get(self.0, param as i32) }
    }

    /// The last error's message, and whether it was only a warning.
    fn error(&self) -> (String, bool) {
        // SAFETY: a valid handle; the message is a NUL-terminated string owned by the handle.
        let (text, code) = unsafe {
            (
                CStr::from_ptr(tj::tj3GetErrorStr(self.0))
                    .to_string_lossy()
                    .into_owned(),
                tj::tj3GetErrorCode(self.0),
            )
        };
        (text, code == tj::TJERR_TJERR_WARNING as i32)
    }
}

fn header(handle: &Handle, bytes: &[u8]) -> Result<(u32, u32), String> {
    // SAFETY: the buffer and its length describe `bytes`, which outlives the call.
    let status = unsafe { tj::tj3DecompressHeader(handle.0, bytes.as_ptr(), bytes.len() as _) };
    if status != 0 {
        return Err(handle.error().0);
    }
    let width = handle.get(tj::TJPARAM_TJPARAM_JPEGWIDTH);
    let height = handle.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT);
    match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!("invalid size {width}x{height} in the header")),
    }
}

/// The image as RGB, 3 bytes per pixel, row by row: (width, height, pixels). The caller has checked the size
/// against its limits.
pub fn decode_rgb(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let handle = Handle::new()?;
    let (width, height) = header(&handle, bytes)?;
    let colorspace = handle.get(tj::TJPARAM_TJPARAM_COLORSPACE);
    let cmyk = colorspace == tj::TJCS_TJCS_CMYK as i32 || colorspace == tj::TJCS_TJCS_YCCK as i32;
    let (format, channels) = if cmyk {
        (tj::TJPF_TJPF_CMYK, 4usize)
    } else {
        (tj::TJPF_TJPF_RGB, 3usize)
    };
    let row = width as usize * channels;
    let mut pixels = vec![0u8; row * height as usize];
    // SAFETY: `pixels` holds `height` rows of `row` bytes, the layout the pitch and pixel format describe.
    let status = unsafe {
        tj::tj3Decompress8(
            handle.0,
            bytes.as_ptr(),
            bytes.len() as _,
            pixels.as_mut_ptr(),
            row as i32,
            format,
        )
    };
    if status != 0 {
        let (message, warning) = handle.error();
        if !warning {
            return Err(message);
        }
    }
    if cmyk {
        pixels = cmyk_to_rgb(&pixels);
    }
    Ok((width, height, pixels))
}

/// Pillow's reading of a CMYK JPEG (`CMYK;I`: the stored values inverted, Adobe's polarity) followed by its
/// `convert("RGB")`: each channel is `(255 − K) − (C·(255 − K))/255`, with Pillow's rounding of the division.
fn cmyk_to_rgb(stored: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut rgb = Vec::with_capacity(stored.len() / 4 * 3);
    for px in stored.chunks_exact(4) {
        // Inverted storage: the true K is 255 − stored, so 255 − K is the stored value.
        let nk = i32::from(px[3]);
        for &c in &px[..3] {
            let c = 255 - i32::from(c);
            rgb.push((nk - muldiv255(c, nk)).clamp(0, 255) as u8);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_is_converted_as_pillow_converts_it() {
        // Stored (inverted) values: C=0 means full cyan; K stored 255 means no black.
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 255, 255, 255]), [0, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 0]), [0, 0, 0]);
        // Pillow: nk = 128, C = 100 → 128 − (100·128 + 128 + …)/255 = 128 − 50 = 78.
        assert_eq!(cmyk_to_rgb(&[155, 255, 255, 128]), [78, 128, 128]);
    }
}
