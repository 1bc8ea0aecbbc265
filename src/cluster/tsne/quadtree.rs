//! The Barnes–Hut quadtree of a 2-D t-SNE view: each cell holds the number and centre of mass of its points, so
//! the repulsion a point feels from a far cell is computed once for the whole cell (van der Maaten 2014).
//!
//! A cell is summarised when its width divided by its distance to the point is below `theta` (0 = every point
//! visited, the exact sum). Points at one position share a leaf; so do points that are still together after
//! [`MAX_DEPTH`] subdivisions.

/// Deepest subdivision; below a cell width of 2⁻⁴⁸ of the view, points count as coincident.
const MAX_DEPTH: u32 = 48;
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Cell {
    /// Centre and half-width of the square.
    cx: f64,
    cy: f64,
    half: f64,
    /// Number of points and, while building, the sum of their coordinates (then their centre of mass).
    mass: f64,
    mx: f64,
    my: f64,
    /// First of the four children (NW, NE, SW, SE order by quadrant bits), or NONE for a leaf.
    children: u32,
    /// A leaf's first point (NONE when empty); the rest follow through `next`.
    first: u32,
    depth: u32,
}

impl Cell {
    fn new(cx: f64, cy: f64, half: f64, depth: u32) -> Cell {
        Cell {
            cx,
            cy,
            half,
            mass: 0.0,
            mx: 0.0,
            my: 0.0,
            children: NONE,
            first: NONE,
            depth,
        }
    }

    fn quadrant(&self, x: f64, y: f64) -> u32 {
        u32::from(x >= self.cx) | (u32::from(y >= self.cy) << 1)
    }
}

/// A quadtree over the points of one gradient step.
pub struct QuadTree<'a> {
    cells: Vec<Cell>,
    /// Next point in the same leaf.
    next: Vec<u32>,
    /// The leaf holding each point.
    leaf: Vec<u32>,
    /// Interleaved x, y of each point.
    y: &'a [f64],
}

/// The repulsion on one point: Σ_j w_ij² (y_i − y_j) and Σ_j w_ij over the other points, w = 1 / (1 + d²).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Repulsion {
    pub fx: f64,
    pub fy: f64,
    pub z: f64,
}

impl<'a> QuadTree<'a> {
    /// Build the tree of `y` (x₀, y₀, x₁, y₁, …).
    pub fn new(y: &'a [f64]) -> QuadTree<'a> {
        let n = y.len() / 2;
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in y.chunks_exact(2) {
            for axis in 0..2 {
                lo[axis] = lo[axis].min(p[axis]);
                hi[axis] = hi[axis].max(p[axis]);
            }
        }
        let half = ((hi[0] - lo[0]).max(hi[1] - lo[1]) / 2.0).max(1e-12) * (1.0 + 1e-9);
        let root = Cell::new((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, half, 0);
        let mut tree = QuadTree {
            cells: Vec::with_capacity(2 * n + 1),
            next: vec![NONE; n],
            leaf: vec![NONE; n],
            y,
        };
        tree.cells.push(root);
        for i in 0..n {
            tree.insert(i as u32);
        }
        for cell in &mut tree.cells {
            if cell.mass > 0.0 {
                cell.mx /= cell.mass;
                cell.my /= cell.mass;
            }
        }
        for (index, cell) in tree.cells.iter().enumerate() {
            let mut p = cell.first;
            while p != NONE {
                tree.leaf[p as usize] = index as u32;
                p = tree.next[p as usize];
            }
        }
        tree
    }

    fn point(&self, i: u32) -> (f64, f64) {
        (self.y[2 * i as usize], self.y[2 * i as usize + 1])
    }

    fn insert(&mut self, i: u32) {
        let (x, y) = self.point(i);
        let mut c = 0usize;
        loop {
            let cell = &mut self.cells[c];
            cell.mass += 1.0;
            cell.mx += x;
            cell.my += y;
            if cell.children != NONE {
                c = (cell.children + cell.quadrant(x, y)) as usize;
                continue;
            }
            if cell.first == NONE {
                cell.first = i;
                return;
            }
            let (first, deepest) = (cell.first, cell.depth >= MAX_DEPTH);
            if self.point(first) == (x, y) || deepest {
                self.next[i as usize] = first;
                self.cells[c].first = i;
                return;
            }
            self.split(c);
            c = (self.cells[c].children + self.cells[c].quadrant(x, y)) as usize;
        }
    }

    /// Turn leaf `c` into four children and move its points (all at one position) into theirs, with their totals.
    /// [`insert`](Self::insert) then walks on into the new point's child (the parent already counts it).
    fn split(&mut self, c: usize) {
        let parent = self.cells[c];
        let half = parent.half / 2.0;
        let first_child = self.cells.len() as u32;
        for q in 0..4u32 {
            let cx = parent.cx + if q & 1 == 1 { half } else { -half };
            let cy = parent.cy + if q & 2 == 2 { half } else { -half };
            self.cells.push(Cell::new(cx, cy, half, parent.depth + 1));
        }
        let (x, y) = self.point(parent.first);
        let child = &mut self.cells[(first_child + parent.quadrant(x, y)) as usize];
        let mut count = 0.0;
        let mut p = parent.first;
        while p != NONE {
            count += 1.0;
            p = self.next[p as usize];
        }
        child.first = parent.first;
        child.mass = count;
        child.mx = x * count;
        child.my = y * count;
        let cell = &mut self.cells[c];
        cell.children = first_child;
        cell.first = NONE;
    }

    /// The repulsion on point `i` with the Barnes–Hut criterion `theta`.
    pub fn repulsion(&self, i: usize, theta: f64) -> Repulsion {
        let (x, y) = self.point(i as u32);
        let mut out = Repulsion::default();
        let mut stack = vec![0u32];
        let theta2 = theta * theta;
        while let Some(c) = stack.pop() {
            let cell = &self.cells[c as usize];
            if cell.mass == 0.0 {
                continue;
            }
            let (dx, dy) = (x - cell.mx, y - cell.my);
            let d2 = dx * dx + dy * dy;
            let width = 2.0 * cell.half;
            let mass = if cell.children == NONE {
                cell.mass - if self.leaf[i] == c { 1.0 } else { 0.0 }
            } else if width * width < theta2 * d2 {
                cell.mass
            } else {
                stack.extend((0..4).map(|q| cell.children + q));
                continue;
            };
            if mass > 0.0 {
                let w = 1.0 / (1.0 + d2);
                out.z += mass * w;
                out.fx += mass * w * w * dx;
                out.fy += mass * w * w * dy;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn brute_force(y: &[f64], i: usize) -> Repulsion {
        let mut out = Repulsion::default();
        for j in (0..y.len() / 2).filter(|&j| j != i) {
            let (dx, dy) = (y[2 * i] - y[2 * j], y[2 * i + 1] - y[2 * j + 1]);
            let w = 1.0 / (1.0 + dx * dx + dy * dy);
            out.z += w;
            out.fx += w * w * dx;
            out.fy += w * w * dy;
        }
        out
    }

    /// Random points with some exact duplicates and a tight pair (deep subdivisions).
    fn points() -> Vec<f64> {
        let mut rng = Rng::new(5);
        let mut y: Vec<f64> = (0..400).map(|_| rng.normal() * 10.0).collect();
        y.extend_from_slice(&[y[0], y[1], y[0], y[1], y[2] + 1e-13, y[3]]);
        y
    }

    #[test]
    fn theta_zero_is_the_exact_sum() {
        let y = points();
        let tree = QuadTree::new(&y);
        for i in 0..y.len() / 2 {
            let (a, b) = (tree.repulsion(i, 0.0), brute_force(&y, i));
            for (u, v) in [(a.z, b.z), (a.fx, b.fx), (a.fy, b.fy)] {
                assert!(
                    (u - v).abs() <= 1e-9 * (1.0 + v.abs()),
                    "point {i}: {a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn the_approximation_is_close() {
        let y = points();
        let tree = QuadTree::new(&y);
        let n = y.len() / 2;
        let (mut z, mut exact_z, mut err, mut norm) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let (a, b) = (tree.repulsion(i, 0.5), brute_force(&y, i));
            z += a.z;
            exact_z += b.z;
            err += (a.fx - b.fx).powi(2) + (a.fy - b.fy).powi(2);
            norm += b.fx.powi(2) + b.fy.powi(2);
        }
        assert!((z / exact_z - 1.0).abs() < 0.01, "Z {z} vs {exact_z}");
        assert!(
            (err / norm).sqrt() < 0.05,
            "relative force error {}",
            (err / norm).sqrt()
        );
    }
}
