//! 2-D views (PCA, t-SNE) of a space's items, one colour per cluster, the legend in a column beside the points.

use plotters::prelude::*;

use super::{
    Canvas, FONT, LegendEntry, Mark, UNLABELLED, draw_legend, legend_width, padded_range, palette,
    tick_label,
};
use crate::error::Result;

/// One item: its coordinates and its label (cluster), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub label: Option<String>,
}

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
    let mut entries = Vec::new();
    if points.iter().any(|p| p.label.is_none()) {
        entries.push(LegendEntry {
            label: "no cluster".into(),
            colour: UNLABELLED,
            mark: Mark::Dot,
        });
    }
    entries.extend(labels.iter().enumerate().map(|(i, label)| LegendEntry {
        label: format!("{legend_title}{label}"),
        colour: palette(i),
        mark: Mark::Dot,
    }));
    canvas.draw("scatter", |area| {
        area.fill(&WHITE)?;
        let area = area.titled(title, (FONT, 18))?;
        // The legend gets a column beside the points, so it never covers any.
        let plot = if entries.is_empty() {
            area
        } else {
            let width = area.dim_in_pixel().0;
            let (plot, legend) = area.split_horizontally(width - legend_width(&area, &entries));
            draw_legend(&legend, &entries, 24)?;
            plot
        };
        let mut chart = ChartBuilder::on(&plot)
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, y_range)?;
        let tick = |v: &f64| tick_label(*v);
        chart
            .configure_mesh()
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style((FONT, 12))
            .light_line_style(RGBColor(236, 236, 236))
            .draw()?;
        chart.draw_series(
            points
                .iter()
                .filter(|p| p.label.is_none())
                .map(|p| Circle::new((p.x, p.y), radius, UNLABELLED.filled())),
        )?;
        for (i, label) in labels.iter().enumerate() {
            let colour = palette(i);
            chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.label.as_deref() == Some(label.as_str()))
                    .map(|p| Circle::new((p.x, p.y), radius, colour.filled())),
            )?;
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
