//! Contact sheets (seed S0): rows of thumbnails with a label on the left and, where given, a caption wrapped under
//! each image. One row per cluster with its most typical members (what a cluster is about, at a glance), or one row
//! per item of a loop run with its hops left to right, each hop's caption under its image (the lineage sheet). The
//! geometry is public so that a sheet can be read back cell by cell.

use image::imageops::FilterType;
use plotters::prelude::*;

use super::{Canvas, FONT, MAX_SIDE};
use crate::error::{Error, Result};

/// One cell: the item, its image bytes, and the caption written under it.
#[derive(Debug, Clone)]
pub struct Cell {
    pub item_id: String,
    pub image: Vec<u8>,
    pub caption: Option<String>,
}

/// One row: its label (e.g. `cluster 3`), a detail line under it (e.g. `12 items`), and the cells shown.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub detail: String,
    pub cells: Vec<Cell>,
}

/// Add `cell` to the row labelled `label`: the last row when it has that label (its detail becomes `detail`),
/// else a new row. Cells come row by row, as the plot queries order them.
pub fn push(rows: &mut Vec<Row>, label: String, detail: String, cell: Cell) {
    match rows.last_mut() {
        Some(row) if row.label == label => {
            row.cells.push(cell);
            row.detail = detail;
        }
        _ => rows.push(Row {
            label,
            detail,
            cells: vec![cell],
        }),
    }
}

/// Height of one line of caption text, in pixels.
pub const LINE_HEIGHT: u32 = 13;

/// Gap between cells, in pixels.
pub const PAD: u32 = 6;
/// Width of the label column on the left.
pub const LABEL_WIDTH: u32 = 120;
/// Height of the title band on top.
pub const TITLE_HEIGHT: u32 = 36;
/// Background of a cell around a thumbnail that does not fill it.
pub const CELL_BACKGROUND: [u8; 3] = [238, 238, 238];

/// Where things are on a sheet of `rows` × `columns` cells of `thumb` pixels, with `caption_lines` lines of text
/// under each thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub thumb: u32,
    pub columns: u32,
    pub rows: u32,
    pub caption_lines: u32,
}

impl Geometry {
    /// The height of one row: the thumbnail, its caption lines, the gap.
    fn row_height(&self) -> u32 {
        self.thumb + self.caption_lines * LINE_HEIGHT + PAD
    }

    /// The sheet's width and height.
    pub fn size(&self) -> (u32, u32) {
        (
            LABEL_WIDTH + self.columns * (self.thumb + PAD) + PAD,
            TITLE_HEIGHT + self.rows * self.row_height() + PAD,
        )
    }

    /// Top-left corner of cell (row, column) (its thumbnail; the caption is below it).
    pub fn cell(&self, row: u32, column: u32) -> (u32, u32) {
        (
            LABEL_WIDTH + PAD + column * (self.thumb + PAD),
            TITLE_HEIGHT + PAD + row * self.row_height(),
        )
    }

    /// `text` in at most `caption_lines` lines of a thumbnail's width (words kept whole where they fit; a cut
    /// ends in an ellipsis).
    pub fn wrap(&self, text: &str) -> Vec<String> {
        // The caption font's average glyph is about 6 px wide.
        let width = (self.thumb / 6).max(4) as usize;
        let mut lines: Vec<String> = Vec::new();
        let mut current = String::new();
        for word in text.split_whitespace() {
            let mut word = word.to_string();
            while word.chars().count() > width {
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                if !current.is_empty() {
                    lines.push(std::mem::take(&mut current));
                }
                lines.push(head);
            }
            let needed =
                current.chars().count() + usize::from(!current.is_empty()) + word.chars().count();
            if needed > width && !current.is_empty() {
                lines.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&word);
        }
        if !current.is_empty() {
            lines.push(current);
        }
        let max = self.caption_lines as usize;
        if lines.len() > max {
            lines.truncate(max);
            if let Some(last) = lines.last_mut() {
                let kept: String = last.chars().take(width.saturating_sub(1)).collect();
                *last = format!("{kept}…");
            }
        }
        lines
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

/// Draw the sheet: its size follows from the rows, the widest row, `thumb` and `caption_lines` (0: no captions).
/// `fewer` says how to make a sheet that would be too large smaller.
pub fn draw(
    title: &str,
    rows: &[Row],
    thumb: u32,
    caption_lines: u32,
    fewer: &str,
) -> Result<Canvas> {
    if !(8..=1024).contains(&thumb) {
        return Err(Error::Usage(format!(
            "--thumb {thumb} px is out of range (8 to 1024)"
        )));
    }
    let geometry = Geometry {
        thumb,
        columns: rows.iter().map(|r| r.cells.len()).max().unwrap_or(0).max(1) as u32,
        rows: rows.len().max(1) as u32,
        caption_lines,
    };
    let (width, height) = geometry.size();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::Usage(format!(
            "a contact sheet of {} rows × {} images at {thumb} px would be {width} × {height} px (at most \
             {MAX_SIDE}): {fewer}",
            geometry.rows, geometry.columns
        )));
    }
    let mut canvas = Canvas::new(width.max(16), height.max(16))?;
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.cells.iter().enumerate() {
            let decoded = image::load_from_memory(&cell.image).map_err(|e| {
                Error::Usage(format!(
                    "contact sheet: the image of item {} ({}) does not decode: {e}",
                    cell.item_id, row.label
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
            area.draw(&Text::new(
                row.label.clone(),
                (PAD as i32 + 4, y as i32 + 4),
                (FONT, 14).into_font().color(&BLACK),
            ))?;
            area.draw(&Text::new(
                row.detail.clone(),
                (PAD as i32 + 4, y as i32 + 24),
                (FONT, 12).into_font().color(&RGBColor(90, 90, 90)),
            ))?;
            for (c, cell) in row.cells.iter().enumerate() {
                let Some(caption) = &cell.caption else {
                    continue;
                };
                let (x, y) = geometry.cell(r as u32, c as u32);
                for (l, line) in geometry.wrap(caption).into_iter().enumerate() {
                    area.draw(&Text::new(
                        line,
                        (x as i32, (y + thumb + 2 + l as u32 * LINE_HEIGHT) as i32),
                        (FONT, 11).into_font().color(&RGBColor(40, 40, 40)),
                    ))?;
                }
            }
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
            caption_lines: 0,
        };
        assert_eq!(g.fit(64, 48), (0, 12, 96, 72));
        assert_eq!(g.fit(48, 64), (12, 0, 72, 96));
        assert_eq!(g.fit(500, 500), (0, 0, 96, 96));
        assert_eq!(g.size(), (120 + 3 * 102 + 6, 36 + 2 * 102 + 6));
        assert_eq!(g.cell(1, 2), (120 + 6 + 204, 36 + 6 + 102));
        let captioned = Geometry {
            caption_lines: 3,
            ..g
        };
        assert_eq!(captioned.cell(1, 0).1, 36 + 6 + 96 + 3 * LINE_HEIGHT + 6);
    }

    #[test]
    fn captions_wrap_at_words_and_are_cut_with_an_ellipsis() {
        let g = Geometry {
            thumb: 60,
            columns: 1,
            rows: 1,
            caption_lines: 2,
        };
        assert_eq!(g.wrap("a red circle"), ["a red", "circle"]);
        assert_eq!(g.wrap(""), Vec::<String>::new());
        let cut = g.wrap("one two three four five six");
        assert_eq!(cut.len(), 2);
        assert!(cut[1].ends_with('…'), "{cut:?}");
        assert_eq!(g.wrap("abcdefghijklmn"), ["abcdefghij", "klmn"]);
    }
}
