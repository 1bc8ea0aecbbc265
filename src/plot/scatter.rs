//! 2-D views (PCA, t-SNE) of a space's items, one colour per cluster.

use plotters::prelude::*;

use super::{Canvas, FONT, UNLABELLED, padded_range, palette};
use crate::error::Result;

/// One item: its coordinates and its label (cluster), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub label: Option<String>,
}

/// Legend entries shown at most.
pub const LEGEND_MAX: usize = 24;

/// The distinct labels in colour order: numeric labels (cluster numbers) by value, the others after them by text.
/// Label i is drawn in [`palette`] colour i; unlabelled points in [`UNLABELLED`].
pub fn label_order(points: &[Point]) -> Vec<String> {
    let mut labels: Vec<&str> = points.iter().filter_map(|p| p.label.as_deref()).collect();
    labels.sort_by(|a, b| match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    });
    labels.dedup();
    labels.into_iter().map(str::to_string).collect()
}

/// Draw the points; returns the labels in colour order. `legend_title` prefixes each legend entry ("cluster 3").
pub fn draw(
    canvas: &mut Canvas,
    title: &str,
    axes: (&str, &str),
    legend_title: &str,
    points: &[Point],
) -> Result<Vec<String>> {
    let labels = label_order(points);
    let x_range = padded_range(points.iter().map(|p| p.x), 0.05);
    let y_range = padded_range(points.iter().map(|p| p.y), 0.05);
    let radius = if points.len() <= 2_000 { 4 } else { 2 };
    canvas.draw("scatter", |area| {
        area.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FONT, 18))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, y_range)?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style((FONT, 12))
            .light_line_style(RGBColor(236, 236, 236))
            .draw()?;
        let unlabelled: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.label.is_none())
            .map(|p| (p.x, p.y))
            .collect();
        if !unlabelled.is_empty() {
            chart
                .draw_series(
                    unlabelled
                        .iter()
                        .map(|&p| Circle::new(p, radius, UNLABELLED.filled())),
                )?
                .label("no cluster")
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, UNLABELLED.filled()));
        }
        for (i, label) in labels.iter().enumerate() {
            let colour = palette(i);
            let drawn = chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.label.as_deref() == Some(label.as_str()))
                    .map(|p| Circle::new((p.x, p.y), radius, colour.filled())),
            )?;
            if i < LEGEND_MAX {
                drawn
                    .label(format!("{legend_title}{label}"))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
            }
        }
        if !labels.is_empty() || !unlabelled.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(160, 160, 160))
                .label_font((FONT, 12))
                .draw()?;
        }
        Ok(())
    })?;
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_order_numbers_by_value() {
        let p = |l: Option<&str>| Point {
            x: 0.0,
            y: 0.0,
            label: l.map(str::to_string),
        };
        let points = [
            p(Some("10")),
            p(Some("2")),
            p(None),
            p(Some("b")),
            p(Some("2")),
        ];
        assert_eq!(label_order(&points), ["2", "10", "b"]);
    }
}
