//! Image preprocessing with the reference processors' arithmetic, read from the model's `preprocessor_config.json`:
//! convert to RGB, resize (CLIP: shortest edge to `size`, keeping the aspect ratio; SigLIP: to exactly
//! `height`×`width`), centre-crop when asked, rescale by 1/255, normalise with the model's mean/std.
//!
//! The resize reproduces Pillow's `Image.resize` (which the transformers processors call) step by step: a separable
//! convolution whose filter support widens by the scale factor when downscaling (antialiasing), coefficients in
//! 22-bit fixed point, a horizontal pass rounded to 8 bits, then the vertical pass. Matching it pixel for pixel
//! keeps vlmdb's features equal to the reference ones instead of "close".

use image::{DynamicImage, RgbImage};
use serde::Deserialize;

use crate::error::{Error, Result};

/// How the image is brought to the model's input size.
#[derive(Debug, Clone, PartialEq)]
pub enum Resize {
    /// The shorter side becomes this many pixels, the longer one keeps the aspect ratio (truncated, as transformers).
    ShortestEdge(u32),
    /// Exactly height × width.
    Exact { height: u32, width: u32 },
    /// The longer side becomes this many pixels, the shorter one keeps the aspect ratio (rounded half to even, as
    /// OpenCLIP's `ResizeKeepRatio`); the centre crop then pads the short side.
    LongestEdge(u32),
}

/// How a centre crop's offset `(size - crop) / 2` is rounded when it falls on half a pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropRound {
    /// Down (transformers' `center_crop`).
    Floor,
    /// To the nearest, ties to even (torchvision's `CenterCrop`: `int(round((size - crop) / 2.0))`).
    HalfEven,
}

/// The resampling filter (PIL's numbering in `resample`: 2 = bilinear, 3 = bicubic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Filter {
    Bilinear,
    Bicubic,
}

/// A model's image preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    pub resize: Resize,
    pub filter: Filter,
    /// Centre crop to height × width after resizing.
    pub crop: Option<(u32, u32)>,
    pub crop_round: CropRound,
    pub rescale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// CLIP's normalisation constants (OpenAI).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeField {
    Int(u32),
    Map {
        shortest_edge: Option<u32>,
        height: Option<u32>,
        width: Option<u32>,
    },
}

#[derive(Debug, Deserialize)]
struct Config {
    size: Option<SizeField>,
    crop_size: Option<SizeField>,
    do_center_crop: Option<bool>,
    do_resize: Option<bool>,
    do_rescale: Option<bool>,
    do_normalize: Option<bool>,
    resample: Option<u32>,
    rescale_factor: Option<f32>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

impl ImageProcessor {
    /// CLIP's processor at input size `size` (shortest edge, then centre crop).
    pub fn clip(size: u32) -> Self {
        ImageProcessor {
            resize: Resize::ShortestEdge(size),
            filter: Filter::Bicubic,
            crop: Some((size, size)),
            crop_round: CropRound::Floor,
            rescale: 1.0 / 255.0,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }

    /// SigLIP's processor at input size `size` (squash to size × size, mean = std = 0.5).
    pub fn siglip(size: u32) -> Self {
        ImageProcessor {
            resize: Resize::Exact {
                height: size,
                width: size,
            },
            filter: Filter::Bicubic,
            crop: None,
            crop_round: CropRound::Floor,
            rescale: 1.0 / 255.0,
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }

    /// Read `preprocessor_config.json`; fields it leaves out keep the values of `defaults`.
    pub fn from_config(json: &str, defaults: ImageProcessor) -> Result<Self> {
        let config: Config = serde_json::from_str(json)?;
        let mut out = defaults;
        if config.do_resize != Some(false) {
            match config.size {
                Some(SizeField::Int(n)) => out.resize = Resize::ShortestEdge(n),
                Some(SizeField::Map {
                    shortest_edge: Some(n),
                    ..
                }) => out.resize = Resize::ShortestEdge(n),
                Some(SizeField::Map {
                    height: Some(height),
                    width: Some(width),
                    ..
                }) => out.resize = Resize::Exact { height, width },
                _ => {}
            }
        }
        match (config.do_center_crop, config.crop_size) {
            (Some(false), _) => out.crop = None,
            (_, Some(SizeField::Int(n))) => out.crop = Some((n, n)),
            (
                _,
                Some(SizeField::Map {
                    height: Some(h),
                    width: Some(w),
                    ..
                }),
            ) => out.crop = Some((h, w)),
            _ => {}
        }
        match config.resample {
            Some(2) => out.filter = Filter::Bilinear,
            Some(3) | None => {}
            Some(other) => {
                return Err(Error::Usage(format!(
                    "preprocessor_config.json: resample={other} is not supported (2 = bilinear, 3 = bicubic)"
                )));
            }
        }
        if config.do_rescale == Some(false) {
            out.rescale = 1.0;
        } else if let Some(factor) = config.rescale_factor {
            out.rescale = factor;
        }
        if config.do_normalize == Some(false) {
            out.mean = [0.0; 3];
            out.std = [1.0; 3];
        } else {
            if let Some(mean) = config.image_mean.as_deref().and_then(three) {
                out.mean = mean;
            }
            if let Some(std) = config.image_std.as_deref().and_then(three) {
                out.std = std;
            }
        }
        Ok(out)
    }

    /// The (height, width) of the tensor this processor produces.
    pub fn output_size(&self) -> (u32, u32) {
        match (self.crop, &self.resize) {
            (Some(crop), _) => crop,
            (None, Resize::Exact { height, width }) => (*height, *width),
            (None, Resize::ShortestEdge(n) | Resize::LongestEdge(n)) => (*n, *n),
        }
    }

    /// A short description of the preprocessing, part of the model cache key (the same string as before
    /// `crop_round` existed when it is `Floor`, so stored caches stay valid).
    pub fn key(&self) -> String {
        let round = match self.crop_round {
            CropRound::Floor => String::new(),
            other => format!(", crop_round: {other:?}"),
        };
        format!(
            "ImageProcessor {{ resize: {:?}, filter: {:?}, crop: {:?}, rescale: {:?}, mean: {:?}, std: {:?}{round} }}",
            self.resize, self.filter, self.crop, self.rescale, self.mean, self.std
        )
    }

    /// Channel-first float pixels (3 × H × W, row-major) for one decoded image.
    pub fn pixels(&self, image: &DynamicImage) -> Vec<f32> {
        let rgb = image.to_rgb8();
        let (w, h) = rgb.dimensions();
        let (out_w, out_h) = match self.resize {
            Resize::ShortestEdge(n) => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let scaled_long = ((f64::from(n) * f64::from(long)) / f64::from(short)) as u32;
                if w <= h {
                    (n, scaled_long)
                } else {
                    (scaled_long, n)
                }
            }
            Resize::Exact { height, width } => (width, height),
            Resize::LongestEdge(n) => {
                let ratio = (f64::from(w) / f64::from(n)).max(f64::from(h) / f64::from(n));
                let side = |x: u32| ((f64::from(x) / ratio).round_ties_even() as u32).max(1);
                (side(w), side(h))
            }
        };
        let resized = resize(&rgb, out_w, out_h, self.filter);
        let (crop_h, crop_w) = self.crop.unwrap_or((out_h, out_w));
        let top = crop_offset(out_h, crop_h, self.crop_round);
        let left = crop_offset(out_w, crop_w, self.crop_round);
        let mut out = vec![0f32; (3 * crop_h * crop_w) as usize];
        let plane = (crop_h * crop_w) as usize;
        for y in 0..crop_h {
            for x in 0..crop_w {
                let (sx, sy) = (i64::from(x) + left, i64::from(y) + top);
                let inside = sx >= 0 && sy >= 0 && (sx as u32) < out_w && (sy as u32) < out_h;
                for c in 0..3 {
                    let value = if inside {
                        f32::from(resized.get_pixel(sx as u32, sy as u32)[c])
                    } else {
                        0.0
                    };
                    out[c * plane + (y * crop_w + x) as usize] =
                        (value * self.rescale - self.mean[c]) / self.std[c];
                }
            }
        }
        out
    }
}

/// Where a centre crop of `crop` pixels starts in a side of `size` pixels: `(size - crop) / 2` rounded as `round`
/// says, or, for a crop larger than the image, minus the zero padding the reference puts before it (half the
/// excess, rounded down, in transformers and torchvision alike).
fn crop_offset(size: u32, crop: u32, round: CropRound) -> i64 {
    if crop <= size {
        let excess = size - crop;
        let half = excess / 2;
        match round {
            CropRound::HalfEven if excess % 2 == 1 && half % 2 == 1 => i64::from(half + 1),
            _ => i64::from(half),
        }
    } else {
        -i64::from((crop - size) / 2)
    }
}

fn three(values: &[f32]) -> Option<[f32; 3]> {
    <[f32; 3]>::try_from(values).ok()
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// For each output pixel: the first input pixel and the fixed-point weights (Pillow's `precompute_coeffs` followed
/// by `normalize_coeffs_8bpc`).
fn coefficients(in_size: u32, out_size: u32, filter: Filter) -> Vec<(usize, Vec<i32>)> {
    let (support, kernel): (f64, fn(f64) -> f64) = match filter {
        Filter::Bicubic => (2.0, bicubic),
        Filter::Bilinear => (1.0, bilinear),
    };
    let scale = f64::from(in_size) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (f64::from(xx) + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
            let weights: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| kernel((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    (if scaled < 0.0 {
                        scaled - 0.5
                    } else {
                        scaled + 0.5
                    }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow-exact resize of an RGB image: two separable passes, each rounded to 8 bits. The order of the passes is
/// Pillow 13's: the vertical pass first when the height shrinks by more than twice what the width shrinks by
/// (`out_h < in_h` and `in_h − out_h > 2·(in_w − out_w)`), else the horizontal pass first. (Pillow ≤ 12 always
/// ran the horizontal pass first; the order changes the 8-bit intermediate, so a pixel can differ by one level.)
pub fn resize(image: &RgbImage, out_w: u32, out_h: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    let vertical_first = out_h < in_h
        && i64::from(in_h) - i64::from(out_h) > 2 * (i64::from(in_w) - i64::from(out_w));
    if vertical_first {
        horizontal(&vertical(image, out_h, filter), out_w, filter)
    } else {
        vertical(&horizontal(image, out_w, filter), out_h, filter)
    }
}

/// One horizontal pass to `out_w` columns.
fn horizontal(image: &RgbImage, out_w: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    if in_w == out_w {
        return image.clone();
    }
    let coeffs = coefficients(in_w, out_w, filter);
    let mut out = RgbImage::new(out_w, in_h);
    for y in 0..in_h {
        for (x, (start, weights)) in coeffs.iter().enumerate() {
            for c in 0..3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (k, w) in weights.iter().enumerate() {
                    acc += i64::from(image.get_pixel((start + k) as u32, y)[c]) * i64::from(*w);
                }
                out.get_pixel_mut(x as u32, y)[c] = clip8(acc);
            }
        }
    }
    out
}

/// One vertical pass to `out_h` rows.
fn vertical(image: &RgbImage, out_h: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    if in_h == out_h {
        return image.clone();
    }
    let coeffs = coefficients(in_h, out_h, filter);
    let mut out = RgbImage::new(in_w, out_h);
    for (y, (start, weights)) in coeffs.iter().enumerate() {
        for x in 0..in_w {
            for c in 0..3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (k, w) in weights.iter().enumerate() {
                    acc += i64::from(image.get_pixel(x, (start + k) as u32)[c]) * i64::from(*w);
                }
                out.get_pixel_mut(x, y as u32)[c] = clip8(acc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (input, output) in [(100, 32), (32, 100), (7, 3)] {
            for (_, weights) in coefficients(input, output, Filter::Bicubic) {
                let sum: i32 = weights.iter().sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= weights.len() as i32,
                    "{sum}"
                );
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let image = RgbImage::from_pixel(50, 37, image::Rgb([10, 128, 250]));
        let out = resize(&image, 17, 23, Filter::Bicubic);
        assert!(out.pixels().all(|p| p.0 == [10, 128, 250]));
    }

    #[test]
    fn a_crop_larger_than_the_image_pads_with_zeros() {
        assert_eq!(crop_offset(10, 4, CropRound::Floor), 3);
        assert_eq!(crop_offset(4, 7, CropRound::Floor), -1);
        assert_eq!(crop_offset(4, 7, CropRound::HalfEven), -1);
        // Half a pixel: transformers floors, torchvision rounds half to even.
        for (excess, floor, even) in [(1, 0, 0), (3, 1, 2), (5, 2, 2), (11, 5, 6)] {
            assert_eq!(crop_offset(33 + excess, 33, CropRound::Floor), floor);
            assert_eq!(crop_offset(33 + excess, 33, CropRound::HalfEven), even);
        }
        let mut processor = ImageProcessor::siglip(2);
        processor.crop = Some((4, 4));
        let image =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255])));
        let pixels = processor.pixels(&image);
        // Row 0 is padding ((0 - 0.5) / 0.5 = -1); the centre 2×2 is the white image ((1 - 0.5) / 0.5 = 1).
        assert_eq!(&pixels[0..4], &[-1.0; 4]);
        assert_eq!(&pixels[4..8], &[-1.0, 1.0, 1.0, -1.0]);
    }

    #[test]
    fn shortest_edge_keeps_the_aspect_ratio() {
        let processor = ImageProcessor::clip(32);
        let image = DynamicImage::ImageRgb8(RgbImage::new(100, 60));
        assert_eq!(processor.pixels(&image).len(), 3 * 32 * 32);
        assert_eq!(processor.output_size(), (32, 32));
    }
}
