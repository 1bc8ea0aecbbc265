//! Metric curves: one line per series over steps or iterations (loss per training step, R@K per mining round,
//! inertia per Lloyd step), with a legend.

use plotters::prelude::*;

use super::{Canvas, FONT, padded_range, palette};
use crate::error::Result;

/// One line: its legend label and its (x, y) points in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Legend entries shown at most; further series are drawn but not named.
pub const LEGEND_MAX: usize = 20;

/// Series with at most this many points also mark each point.
const MARKED_MAX: usize = 60;

/// Draw `series` on `canvas`: series i in [`palette`] colour i.
pub fn draw(
    canvas: &mut Canvas,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let x_range = padded_range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        0.02,
    );
    let y_range = padded_range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        0.05,
    );
    canvas.draw("metrics", |area| {
        area.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FONT, 18))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range, y_range)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 12))
            .light_line_style(RGBColor(236, 236, 236))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let colour = palette(i);
            let line = chart.draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))?;
            if i < LEGEND_MAX {
                line.label(s.label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            }
            if s.points.len() <= MARKED_MAX {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font((FONT, 12))
            .draw()?;
        Ok(())
    })
}
