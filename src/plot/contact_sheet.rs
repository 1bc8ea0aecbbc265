//! Contact sheets (seed S0): one row per cluster, its most typical members' thumbnails side by side, so what a
//! cluster is about can be seen at a glance. The geometry is public so that a sheet can be read back cell by cell.

use image::imageops::FilterType;
use plotters::prelude::*;

use super::{Canvas, FONT, MAX_SIDE};
use crate::error::{Error, Result};

/// One cell: the item and its image bytes.
#[derive(Debug, Clone)]
pub struct Cell {
    pub item_id: String,
    pub image: Vec<u8>,
}

/// One row: a cluster, its member count, and the cells shown.
#[derive(Debug, Clone)]
pub struct Row {
    pub cluster: i64,
    pub size: i64,
    pub cells: Vec<Cell>,
}

/// Gap between cells, in pixels.
pub const PAD: u32 = 6;
/// Width of the label column on the left.
pub const LABEL_WIDTH: u32 = 120;
/// Height of the title band on top.
pub const TITLE_HEIGHT: u32 = 36;
/// Background of a cell around a thumbnail that does not fill it.
pub const CELL_BACKGROUND: [u8; 3] = [238, 238, 238];

/// Where things are on a sheet of `rows` × `columns` cells of `thumb` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub thumb: u32,
    pub columns: u32,
    pub rows: u32,
}

impl Geometry {
    /// The sheet's width and height.
    pub fn size(&self) -> (u32, u32) {
        (
            LABEL_WIDTH + self.columns * (self.thumb + PAD) + PAD,
            TITLE_HEIGHT + self.rows * (self.thumb + PAD) + PAD,
        )
    }

    /// Top-left corner of cell (row, column).
    pub fn cell(&self, row: u32, column: u32) -> (u32, u32) {
        (
            LABEL_WIDTH + PAD + column * (self.thumb + PAD),
            TITLE_HEIGHT + PAD + row * (self.thumb + PAD),
        )
    }

    /// Where an image of `width` × `height` lands inside its cell: scaled (down or up) to fit the `thumb` square
    /// with its aspect ratio kept, and centred: (x offset, y offset, width, height).
    pub fn fit(&self, width: u32, height: u32) -> (u32, u32, u32, u32) {
        let scale = self.thumb as f64 / width.max(height).max(1) as f64;
        let w = ((width as f64 * scale).round() as u32).clamp(1, self.thumb);
        let h = ((height as f64 * scale).round() as u32).clamp(1, self.thumb);
        ((self.thumb - w) / 2, (self.thumb - h) / 2, w, h)
    }
}

/// Draw the sheet: its size follows from the rows, the widest row and `thumb`.
pub fn draw(title: &str, rows: &[Row], thumb: u32) -> Result<Canvas> {
    if !(8..=1024).contains(&thumb) {
        return Err(Error::Usage(format!(
            "--thumb {thumb} px is out of range (8 to 1024)"
        )));
    }
    let geometry = Geometry {
        thumb,
        columns: rows.iter().map(|r| r.cells.len()).max().unwrap_or(0).max(1) as u32,
        rows: rows.len().max(1) as u32,
    };
    let (width, height) = geometry.size();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::Usage(format!(
            "a contact sheet of {} clusters × {} images at {thumb} px would be {width} × {height} px (at most \
             {MAX_SIDE}): lower --per-cluster or --thumb, or cluster with fewer clusters",
            geometry.rows, geometry.columns
        )));
    }
    let mut canvas = Canvas::new(width.max(16), height.max(16))?;
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.cells.iter().enumerate() {
            let decoded = image::load_from_memory(&cell.image).map_err(|e| {
                Error::Usage(format!(
                    "contact sheet: the image of item {} (cluster {}) does not decode: {e}",
                    cell.item_id, row.cluster
                ))
            })?;
            let (x, y) = geometry.cell(r as u32, c as u32);
            canvas.fill(x, y, thumb, thumb, CELL_BACKGROUND);
            let (dx, dy, w, h) = geometry.fit(decoded.width(), decoded.height());
            let small = decoded.resize_exact(w, h, FilterType::Triangle).to_rgb8();
            canvas.blit(&small, x + dx, y + dy);
        }
    }
    canvas.draw("contact sheet", |area| {
        area.draw(&Text::new(
            title.to_string(),
            (PAD as i32 + 4, 10),
            (FONT, 18).into_font().color(&BLACK),
        ))?;
        for (r, row) in rows.iter().enumerate() {
            let (_, y) = geometry.cell(r as u32, 0);
            let style = (FONT, 14).into_font().color(&BLACK);
            area.draw(&Text::new(
                format!("cluster {}", row.cluster),
                (PAD as i32 + 4, y as i32 + 4),
                style.clone(),
            ))?;
            let noun = if row.size == 1 { "item" } else { "items" };
            area.draw(&Text::new(
                format!("{} {noun}", row.size),
                (PAD as i32 + 4, y as i32 + 24),
                (FONT, 12).into_font().color(&RGBColor(90, 90, 90)),
            ))?;
        }
        Ok(())
    })?;
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_fit_their_cell_keeping_aspect() {
        let g = Geometry {
            thumb: 96,
            columns: 3,
            rows: 2,
        };
        assert_eq!(g.fit(64, 48), (0, 12, 96, 72));
        assert_eq!(g.fit(48, 64), (12, 0, 72, 96));
        assert_eq!(g.fit(500, 500), (0, 0, 96, 96));
        assert_eq!(g.size(), (120 + 3 * 102 + 6, 36 + 2 * 102 + 6));
        assert_eq!(g.cell(1, 2), (120 + 6 + 204, 36 + 6 + 102));
    }
}
