//! Plots, drawn headless into an RGB buffer with plotters and encoded as PNG; text is set in the bundled DejaVu Sans
//! (`src/plot/fonts/`), so nothing depends on the fonts a machine has. One file per kind of plot: metric curves
//! ([`curves`]), 2-D views coloured by cluster ([`scatter`]), similarity distributions of positive vs negative pairs
//! ([`similarity`]) and contact sheets of cluster members ([`contact_sheet`]). [`command`] is `vlmdb plot`: the
//! data comes from the SQL files under `sql/plot/`, the PNG goes to `--out` and to `artifacts` under a `plot` run.

pub mod contact_sheet;
pub mod curves;
pub mod scatter;
pub mod similarity;

use std::sync::Once;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, IntoDrawingArea, RGBColor};
use plotters::style::FontStyle;

use crate::error::{Error, Result};

/// The family name the bundled font is registered under (plotters' name for its default family).
pub const FONT: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("plot/fonts/DejaVuSans.ttf");

/// Largest width or height of a plot, in pixels.
pub const MAX_SIDE: u32 = 16_384;

/// Register the bundled font with plotters, once per process.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure here would be a build defect, and plotters then
        // reports the missing font when text is drawn.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS);
    });
}

/// The drawing area a plot draws on.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// A plotters error, boxed with the plot it happened in.
pub type DrawResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// An RGB image that plots draw on.
#[derive(Debug, Clone)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white canvas; each side must be between 16 and [`MAX_SIDE`] pixels.
    pub fn new(width: u32, height: u32) -> Result<Canvas> {
        for (name, side) in [("width", width), ("height", height)] {
            if !(16..=MAX_SIDE).contains(&side) {
                return Err(Error::Usage(format!(
                    "plot {name} {side} px is out of range (16 to {MAX_SIDE})"
                )));
            }
        }
        Ok(Canvas {
            width,
            height,
            pixels: vec![255; width as usize * height as usize * 3],
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Draw on the canvas with plotters; `plot` names the plot in errors.
    pub fn draw(&mut self, plot: &str, paint: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<()> {
        register_font();
        let size = (self.width, self.height);
        let area = BitMapBackend::with_buffer(&mut self.pixels, size).into_drawing_area();
        paint(&area)
            .and_then(|()| area.present().map_err(Into::into))
            .map_err(|source| Error::Plot {
                plot: plot.to_string(),
                source,
            })
    }

    /// Copy an RGB image onto the canvas with its top-left corner at (x, y), clipped to the canvas.
    pub fn blit(&mut self, image: &image::RgbImage, x: u32, y: u32) {
        let width = self.width as usize;
        for (ix, iy, pixel) in image.enumerate_pixels() {
            let (cx, cy) = (x + ix, y + iy);
            if cx < self.width && cy < self.height {
                let at = (cy as usize * width + cx as usize) * 3;
                self.pixels[at..at + 3].copy_from_slice(&pixel.0);
            }
        }
    }

    /// Fill a rectangle with one colour, clipped to the canvas.
    pub fn fill(&mut self, x: u32, y: u32, width: u32, height: u32, colour: [u8; 3]) {
        let stride = self.width as usize;
        for cy in y..(y + height).min(self.height) {
            for cx in x..(x + width).min(self.width) {
                let at = (cy as usize * stride + cx as usize) * 3;
                self.pixels[at..at + 3].copy_from_slice(&colour);
            }
        }
    }

    /// The canvas as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(
                &self.pixels,
                self.width,
                self.height,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| Error::Plot {
                plot: "png".into(),
                source: Box::new(e),
            })?;
        Ok(bytes)
    }
}

/// Ten well-separated colours (Tableau 10); series and clusters beyond them get further hues round the colour wheel.
const TABLEAU: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of series or cluster number `i`: Tableau 10 first, then golden-angle hues at alternating lightness.
pub fn palette(i: usize) -> RGBColor {
    if let Some(&(r, g, b)) = TABLEAU.get(i) {
        return RGBColor(r, g, b);
    }
    let n = (i - TABLEAU.len()) as f64;
    let hue = (n * 137.507_764).rem_euclid(360.0);
    let lightness = [0.45, 0.6, 0.35][(i - TABLEAU.len()) % 3];
    hsl(hue, 0.65, lightness)
}

/// The colour of points without a label (unclustered items).
pub const UNLABELLED: RGBColor = RGBColor(170, 170, 170);

fn hsl(hue: f64, saturation: f64, lightness: f64) -> RGBColor {
    let c = (1.0 - (2.0 * lightness - 1.0).abs()) * saturation;
    let h = hue / 60.0;
    let x = c * (1.0 - (h.rem_euclid(2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = lightness - c / 2.0;
    let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    RGBColor(byte(r), byte(g), byte(b))
}

/// How a legend entry is marked: a short line (curves) or a dot (points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Line,
    Dot,
}

/// One entry of a legend.
#[derive(Debug, Clone, PartialEq)]
pub struct LegendEntry {
    pub label: String,
    pub colour: RGBColor,
    pub mark: Mark,
}

/// Height of one legend row, in pixels.
const LEGEND_ROW: i32 = 18;
/// The label font's size.
const LEGEND_FONT: u32 = 12;

/// The width of a legend column beside the data for `entries` (at most a third of `area`'s width).
pub fn legend_width(area: &Area<'_>, entries: &[LegendEntry]) -> u32 {
    use plotters::style::{IntoFont, TextStyle};
    let style = TextStyle::from((FONT, LEGEND_FONT).into_font());
    let widest = entries
        .iter()
        .filter_map(|e| area.estimate_text_size(&e.label, &style).ok())
        .map(|(w, _)| w)
        .max()
        .unwrap_or(0);
    (widest + 44).min(area.dim_in_pixel().0 / 3)
}

/// Draw `entries` top-down in `area` (a column beside the data, so the legend never covers it), starting `top`
/// pixels down; entries that do not fit are counted in a last line.
pub fn draw_legend(area: &Area<'_>, entries: &[LegendEntry], top: i32) -> DrawResult {
    use plotters::element::{Circle, PathElement, Text};
    use plotters::style::{Color, IntoFont, TextStyle};
    let font = (FONT, LEGEND_FONT).into_font();
    let (width, height) = area.dim_in_pixel();
    let rows = ((height as i32 - top) / LEGEND_ROW).max(1) as usize;
    let shown = if entries.len() > rows {
        rows - 1
    } else {
        entries.len()
    };
    for (i, entry) in entries.iter().take(shown).enumerate() {
        let y = top + i as i32 * LEGEND_ROW;
        match entry.mark {
            Mark::Line => area.draw(&PathElement::new(
                vec![(6, y), (26, y)],
                entry.colour.stroke_width(2),
            ))?,
            Mark::Dot => area.draw(&Circle::new((16, y), 4, entry.colour.filled()))?,
        }
        // Labels wider than the column end in an ellipsis.
        let room = width.saturating_sub(36);
        let fits = |text: &str| {
            area.estimate_text_size(text, &TextStyle::from(font.clone()))
                .map_or(true, |(w, _)| w <= room)
        };
        let mut label = entry.label.clone();
        while !fits(&label) && label.chars().count() > 1 {
            let mut chars: Vec<char> = label.trim_end_matches('…').chars().collect();
            chars.pop();
            label = chars.into_iter().collect::<String>() + "…";
        }
        area.draw(&Text::new(label, (32, y - 7), font.clone()))?;
    }
    if shown < entries.len() {
        let y = top + shown as i32 * LEGEND_ROW;
        area.draw(&Text::new(
            format!("… {} more", entries.len() - shown),
            (32, y - 7),
            font,
        ))?;
    }
    Ok(())
}

/// A tick label: up to four significant digits, no trailing zeros.
pub fn tick_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs();
    if (1e-4..1e6).contains(&magnitude) {
        let decimals = (3 - magnitude.log10().floor() as i32).max(0) as usize;
        let text = format!("{v:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    } else {
        format!("{v:.2e}")
    }
}

/// How many tick labels an axis of whole numbers (steps, epochs, hops) over `range` gets, so that no tick falls
/// between two numbers.
pub fn whole_number_ticks(range: &std::ops::Range<f64>) -> usize {
    let whole = (range.end.floor() - range.start.ceil()).max(0.0) as usize + 1;
    whole.clamp(1, 10)
}

/// A range that covers `values` with a margin of `pad` of its span on each side (a unit span around a single value).
pub fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= f64::EPSILON * lo.abs().max(1.0) {
        return (lo - 0.5)..(hi + 0.5);
    }
    (lo - pad * span)..(hi + pad * span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.001), "0.001");
        assert_eq!(tick_label(-0.0), "0");
        assert_eq!(tick_label(-0.2), "-0.2");
        assert_eq!(tick_label(3.16227766), "3.162");
        assert_eq!(tick_label(1000.0), "1000");
        assert_eq!(tick_label(0.00095), "0.00095");
        assert_eq!(tick_label(2e-5), "2.00e-5");
        assert_eq!(whole_number_ticks(&(-0.06..3.06)), 4);
        assert_eq!(whole_number_ticks(&(-0.5..0.5)), 1);
        assert_eq!(whole_number_ticks(&(0.0..1000.0)), 10);
    }

    #[test]
    fn palette_colours_are_distinct() {
        let colours: std::collections::HashSet<(u8, u8, u8)> = (0..200)
            .map(|i| {
                let c = palette(i);
                (c.0, c.1, c.2)
            })
            .collect();
        assert_eq!(colours.len(), 200);
        assert!(!colours.contains(&(UNLABELLED.0, UNLABELLED.1, UNLABELLED.2)));
    }

    #[test]
    fn canvas_encodes_a_png_of_its_size() {
        let mut canvas = Canvas::new(40, 30).expect("canvas");
        canvas.fill(0, 0, 10, 10, [255, 0, 0]);
        let png = canvas.png().expect("png");
        let decoded = image::load_from_memory(&png).expect("decode").to_rgb8();
        assert_eq!(decoded.dimensions(), (40, 30));
        assert_eq!(decoded.get_pixel(5, 5).0, [255, 0, 0]);
        assert_eq!(decoded.get_pixel(20, 20).0, [255, 255, 255]);
        assert!(Canvas::new(8, 30).is_err());
    }
}
