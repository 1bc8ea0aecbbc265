//! Image validation: the format comes from the content (never the extension), the whole image is decoded so
//! truncated files are caught, and decoder limits refuse decompression bombs from their header, before any pixel
//! buffer is allocated. Also the `--resize` of dataset prep.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

mod jpeg;

/// The largest width or height accepted (a 60,000-pixel side is refused from the header).
pub const MAX_SIDE: u32 = 16_384;
/// The most memory one decode may allocate.
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// What validation learned about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
}

/// The name stored in `images.format`.
pub fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Tiff => "tiff",
        _ => "other",
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

/// Decode `bytes` fully under the limits; the error is the reason the item is rejected.
pub fn decode(bytes: &[u8]) -> Result<(DynamicImage, ImageInfo), String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read image: {e}"))?;
    let format = reader
        .format()
        .ok_or_else(|| "not an image (unrecognised content)".to_string())?;
    // Reading the header allocates no pixels, so it runs without limits to report the declared size.
    reader.no_limits();
    let (width, height) = reader.into_dimensions().map_err(|e| describe(format, e))?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "image of {width}x{height} pixels exceeds the {MAX_SIDE}-pixel limit (decompression bomb?)"
        ));
    }
    if format == ImageFormat::Jpeg {
        if !jpeg_is_complete(bytes) {
            return Err(
                "corrupt or truncated jpeg image: the data ends before the end-of-image marker"
                    .into(),
            );
        }
        // Four bytes a pixel at most (CMYK) before it becomes RGB.
        if u64::from(width) * u64::from(height) * 4 > MAX_ALLOC {
            return Err(format!(
                "refused by decoder limits (a {width}x{height} image needs more than {} MB): decompression bomb?",
                MAX_ALLOC >> 20
            ));
        }
        let (w, h, pixels) =
            jpeg::decode_rgb(bytes).map_err(|e| format!("corrupt or truncated jpeg image: {e}"))?;
        let image = image::RgbImage::from_raw(w, h, pixels)
            .ok_or_else(|| "corrupt jpeg image: decoded size mismatch".to_string())?;
        return Ok((
            DynamicImage::ImageRgb8(image),
            ImageInfo {
                width: w,
                height: h,
                format,
            },
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    let image = reader.decode().map_err(|e| describe(format, e))?;
    let info = ImageInfo {
        width: image.width(),
        height: image.height(),
        format,
    };
    Ok((image, info))
}

/// Format and size from the header alone (no pixels decoded): what a shell shows for a binary cell. `None` for
/// bytes that are not an image of a known format.
pub fn header(bytes: &[u8]) -> Option<ImageInfo> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let format = reader.format()?;
    let (width, height) = reader.into_dimensions().ok()?;
    Some(ImageInfo {
        width,
        height,
        format,
    })
}

/// True when a JPEG's last scan is followed by its end-of-image marker (`FF D9`). The JPEG decoder fills a cut
/// scan with grey and reports nothing; Pillow refuses such a file ("image file is truncated"), and so do we.
/// Bytes after the marker (data some cameras append) are allowed, as Pillow allows them.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| {
        bytes
            .windows(2)
            .rposition(|w| w[0] == 0xFF && w[1] == marker)
    };
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}

fn describe(format: ImageFormat, e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(l) => {
            format!("refused by decoder limits ({l}): decompression bomb?")
        }
        other => format!(
            "corrupt or truncated {} image: {other}",
            format_name(format)
        ),
    }
}

/// An image re-encoded at a smaller size.
#[derive(Debug, Clone)]
pub struct Resized {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The format of `bytes`: the original's for JPEG and PNG, PNG for formats without a bundled encoder.
    pub format: ImageFormat,
}

/// Shrink so the longest side is `longest` (keeping aspect ratio) and re-encode. Images already that small are
/// left as they are (`None`).
pub fn resize(
    image: &DynamicImage,
    info: ImageInfo,
    longest: u32,
) -> Result<Option<Resized>, String> {
    if info.width.max(info.height) <= longest {
        return Ok(None);
    }
    let resized = image.resize(longest, longest, image::imageops::FilterType::Lanczos3);
    let format = match info.format {
        ImageFormat::Jpeg | ImageFormat::Png => info.format,
        _ => ImageFormat::Png,
    };
    let mut out = Cursor::new(Vec::new());
    let encoded = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(resized.to_rgb8()).write_to(&mut out, format)
    } else {
        resized.write_to(&mut out, format)
    };
    encoded.map_err(|e| format!("re-encoding the resized image: {e}"))?;
    Ok(Some(Resized {
        bytes: out.into_inner(),
        width: resized.width(),
        height: resized.height(),
        format,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::new_rgb8(width, height);
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).expect("encode");
        out.into_inner()
    }

    #[test]
    fn format_comes_from_content() {
        let (_, info) = decode(&png(5, 3)).expect("decode");
        assert_eq!(
            (info.width, info.height, format_name(info.format)),
            (5, 3, "png")
        );
        assert_eq!(decode(b"").expect_err("empty"), "empty file (0 bytes)");
        assert_eq!(
            decode(b"hello, not an image").expect_err("text"),
            "not an image (unrecognised content)"
        );
        let bytes = png(40, 40);
        let truncated = &bytes[..bytes.len() / 2];
        assert!(
            decode(truncated)
                .expect_err("truncated")
                .contains("corrupt or truncated png")
        );
    }

    #[test]
    fn truncated_jpegs_are_refused_at_every_cut() {
        // A real photo-like JPEG of the fixtures, cut as issue 24 cut them: Pillow refuses every cut.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/datasets/karpathy/images/scene_001.jpg"
        );
        let bytes = std::fs::read(path).expect("fixture jpeg");
        decode(&bytes).expect("the whole file decodes");
        let mut appended = bytes.clone();
        appended.extend_from_slice(b"trailing data some cameras append");
        decode(&appended).expect("bytes after the end marker are allowed");
        for percent in [99, 90, 50, 20, 5] {
            let cut = &bytes[..bytes.len() * percent / 100];
            let err = decode(cut).expect_err("truncated");
            assert!(
                err.contains("corrupt or truncated jpeg"),
                "{percent} %: {err}"
            );
        }
    }

    #[test]
    fn resize_keeps_aspect() {
        let bytes = png(100, 50);
        let (image, info) = decode(&bytes).expect("decode");
        let small = resize(&image, info, 20).expect("resize").expect("smaller");
        assert_eq!(
            (small.width, small.height, small.format),
            (20, 10, ImageFormat::Png)
        );
        let (_, again) = decode(&small.bytes).expect("decode resized");
        assert_eq!((again.width, again.height), (20, 10));
        assert!(resize(&image, info, 200).expect("no-op").is_none());
    }
}
