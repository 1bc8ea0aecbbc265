//! Similarity distributions (seed S3): for each group of pairs (positive, negative), a density histogram and a
//! Gaussian kernel density estimate, so the overlap of matching and non-matching pairs can be read off.

use plotters::prelude::*;

use super::{Canvas, FONT, palette};
use crate::error::{Error, Result};

/// The similarities of one group of pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    pub values: Vec<f64>,
}

/// Count, mean and sample standard deviation of a group.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Stats {
            n,
            mean,
            std: var.sqrt(),
        }
    }
}

/// Scott's rule, as SciPy's `gaussian_kde` (one dimension): sample standard deviation × n^(-1/5).
/// `None` when there is no spread to estimate (fewer than two values, or all equal).
pub fn scott_bandwidth(values: &[f64]) -> Option<f64> {
    let stats = Stats::of(values);
    let h = stats.std * (stats.n as f64).powf(-0.2);
    (stats.n > 1 && h > 0.0).then_some(h)
}

/// The Gaussian kernel density estimate of `values` with bandwidth `h`, evaluated at each of `at`:
/// f(x) = 1 / (n h √(2π)) Σ_i exp(-((x - v_i) / h)² / 2).
pub fn kde(values: &[f64], h: f64, at: &[f64]) -> Vec<f64> {
    let norm = 1.0 / (values.len() as f64 * h * (2.0 * std::f64::consts::PI).sqrt());
    at.iter()
        .map(|&x| {
            norm * values
                .iter()
                .map(|&v| (-0.5 * ((x - v) / h).powi(2)).exp())
                .sum::<f64>()
        })
        .collect()
}

/// Densities of `values` in `bins` equal bins over [lo, hi] (the last bin closed), normalised so that the
/// histogram's area is 1, as `numpy.histogram(density=True)`.
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let mut counts = vec![0usize; bins];
    let width = (hi - lo) / bins as f64;
    for &v in values {
        if v < lo || v > hi || !v.is_finite() {
            continue;
        }
        let b = (((v - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let total: usize = counts.iter().sum();
    counts
        .into_iter()
        .map(|c| c as f64 / (total.max(1) as f64 * width))
        .collect()
}

/// The share of the y axis left free above the data for the legend (two or three lines).
const LEGEND_HEADROOM: f64 = 0.3;

/// Draw each group's histogram (translucent) and KDE (solid line) in its palette colour; returns each group's stats.
pub fn draw(
    canvas: &mut Canvas,
    title: &str,
    x_label: &str,
    groups: &[Group],
    bins: usize,
) -> Result<Vec<Stats>> {
    if bins == 0 {
        return Err(Error::Usage("--bins must be at least 1".into()));
    }
    let all = || groups.iter().flat_map(|g| g.values.iter().copied());
    let lo = all().fold(f64::INFINITY, f64::min);
    let hi = all().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let span = hi - lo;
    let width = span / bins as f64;
    let grid: Vec<f64> = (0..=400)
        .map(|i| lo - 0.1 * span + 1.2 * span * i as f64 / 400.0)
        .collect();
    let drawn: Vec<(Vec<f64>, Option<Vec<f64>>)> = groups
        .iter()
        .map(|g| {
            let hist = histogram(&g.values, lo, hi, bins);
            let curve = scott_bandwidth(&g.values).map(|h| kde(&g.values, h, &grid));
            (hist, curve)
        })
        .collect();
    let top = drawn
        .iter()
        .flat_map(|(h, c)| h.iter().chain(c.iter().flatten()))
        .fold(0.0f64, |a, &b| a.max(b));
    let stats: Vec<Stats> = groups.iter().map(|g| Stats::of(&g.values)).collect();
    canvas.draw("similarity", |area| {
        area.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FONT, 18))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (lo - 0.1 * span)..(hi + 0.1 * span),
                // Headroom above the tallest bar or curve for the legend in the upper left corner.
                0.0..(top * (1.0 + LEGEND_HEADROOM)).max(f64::MIN_POSITIVE),
            )?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("density")
            .label_style((FONT, 12))
            .light_line_style(RGBColor(236, 236, 236))
            .draw()?;
        for (i, ((hist, curve), group)) in drawn.iter().zip(groups).enumerate() {
            let colour = palette(i);
            chart.draw_series(hist.iter().enumerate().filter(|(_, d)| **d > 0.0).map(
                |(b, &d)| {
                    let x0 = lo + b as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, d)], colour.mix(0.3).filled())
                },
            ))?;
            let s = stats[i];
            let label = format!(
                "{} (n = {}, mean {:.3}, sd {:.3})",
                group.label, s.n, s.mean, s.std
            );
            match curve {
                Some(curve) => {
                    chart
                        .draw_series(LineSeries::new(
                            grid.iter().copied().zip(curve.iter().copied()),
                            colour.stroke_width(2),
                        ))?
                        .label(label)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                        });
                }
                None => {
                    chart
                        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                        .label(label)
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 4), (x + 20, y + 4)], colour.mix(0.3).filled())
                        });
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font((FONT, 12))
            .draw()?;
        Ok(())
    })?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kde_is_scotts_gaussian_estimate() {
        let values = [0.0, 1.0];
        // Sample sd of {0, 1} is 1/√2; Scott's factor for n = 2 is 2^(-1/5).
        let h = scott_bandwidth(&values).expect("bandwidth");
        assert!((h - std::f64::consts::FRAC_1_SQRT_2 * 2f64.powf(-0.2)).abs() < 1e-15);
        let phi = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let at0 = kde(&values, h, &[0.0])[0];
        assert!((at0 - (phi(0.0) + phi(1.0 / h)) / (2.0 * h)).abs() < 1e-15);
        // It is a density: the area under it is 1.
        let grid: Vec<f64> = (0..=4000)
            .map(|i| -6.0 + 13.0 * i as f64 / 4000.0)
            .collect();
        let area: f64 = kde(&values, h, &grid).iter().sum::<f64>() * 13.0 / 4000.0;
        assert!((area - 1.0).abs() < 1e-6, "{area}");
        assert_eq!(scott_bandwidth(&[0.5]), None);
        assert_eq!(scott_bandwidth(&[0.5, 0.5]), None);
    }

    #[test]
    fn histogram_is_a_density_like_numpy() {
        // numpy.histogram([0, 0.1, 0.5, 1.0], bins=2, range=(0, 1), density=True) -> [1.0, 1.0]
        assert_eq!(histogram(&[0.0, 0.1, 0.5, 1.0], 0.0, 1.0, 2), [1.0, 1.0]);
        assert_eq!(histogram(&[0.0, 0.1, 0.2, 1.0], 0.0, 1.0, 2), [1.5, 0.5]);
    }
}
