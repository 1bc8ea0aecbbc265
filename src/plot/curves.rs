//! Metric curves over steps, epochs, iterations or hops: one panel per metric sharing the x axis (a loss of 4 and
//! a learning rate of 0.001 each get their own y axis), or every series on one axis; optionally a log y axis. The
//! x axis ticks whole numbers only, and the legend sits in a column beside the panels, never over the data.

use plotters::prelude::*;

use super::{
    Canvas, FONT, LegendEntry, Mark, draw_legend, legend_width, padded_range, palette, tick_label,
    whole_number_ticks,
};
use crate::error::{Error, Result};

/// One line: its legend label and its (x, y) points in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: the name of its y axis and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub y_label: String,
    pub series: Vec<Series>,
}

/// Series with at most this many points also mark each point.
const MARKED_MAX: usize = 60;

/// Draw `panels` top to bottom on `canvas`, sharing the x axis named `x_label`; the n-th series (counting across
/// panels) is drawn in [`palette`] colour n. With `log_y` every value must be above 0.
pub fn draw(
    canvas: &mut Canvas,
    title: &str,
    x_label: &str,
    log_y: bool,
    panels: &[Panel],
) -> Result<()> {
    let all = || panels.iter().flat_map(|p| &p.series);
    if log_y {
        for s in all() {
            if let Some(&(x, y)) = s
                .points
                .iter()
                .find(|p| p.1.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
            {
                return Err(Error::Usage(format!(
                    "--log-y: '{}' is {y} at {x_label} {x}; a log axis needs values above 0",
                    s.label
                )));
            }
        }
    }
    let y_of = move |y: f64| if log_y { y.log10() } else { y };
    let x_range = padded_range(all().flat_map(|s| s.points.iter().map(|p| p.0)), 0.02);
    let x_ticks = whole_number_ticks(&x_range);
    let entries: Vec<LegendEntry> = all()
        .enumerate()
        .map(|(i, s)| LegendEntry {
            label: s.label.clone(),
            colour: palette(i),
            mark: Mark::Line,
        })
        .collect();
    canvas.draw("metrics", |area| {
        area.fill(&WHITE)?;
        let area = area.titled(title, (FONT, 18))?;
        let width = area.dim_in_pixel().0;
        let (plots, legend) = area.split_horizontally(width - legend_width(&area, &entries));
        draw_legend(&legend, &entries, 24)?;
        let rows = plots.split_evenly((panels.len().max(1), 1));
        let mut colour = 0;
        for (k, (panel, panel_area)) in panels.iter().zip(&rows).enumerate() {
            let last = k + 1 == panels.len();
            let y_range = padded_range(
                panel
                    .series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| y_of(p.1))),
                0.05,
            );
            let mut chart = ChartBuilder::on(panel_area)
                .margin(8)
                .x_label_area_size(if last { 42 } else { 22 })
                .y_label_area_size(72)
                .build_cartesian_2d(x_range.clone(), y_range)?;
            let x_format = |v: &f64| format!("{v:.0}");
            let y_format = |v: &f64| tick_label(if log_y { 10f64.powf(*v) } else { *v });
            let y_desc = if log_y {
                format!("{} (log scale)", panel.y_label)
            } else {
                panel.y_label.clone()
            };
            let mut mesh = chart.configure_mesh();
            mesh.x_labels(x_ticks)
                .x_label_formatter(&x_format)
                .y_label_formatter(&y_format)
                .y_desc(y_desc)
                .label_style((FONT, 12))
                .light_line_style(RGBColor(236, 236, 236));
            if last {
                mesh.x_desc(x_label);
            }
            mesh.draw()?;
            for s in &panel.series {
                let c = palette(colour);
                colour += 1;
                let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x, y_of(y))).collect();
                chart.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?;
                if points.len() <= MARKED_MAX {
                    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
                }
            }
        }
        Ok(())
    })
}
