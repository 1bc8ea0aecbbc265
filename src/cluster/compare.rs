//! Comparing two clusterings (seed S0's iterations): agreement of two assignments of the same items — adjusted Rand
//! index and normalised mutual information, as scikit-learn defines them — and the one-to-one matching of two sets
//! of clusters that maximises total centroid similarity (the Hungarian algorithm).

use std::collections::HashMap;

/// Contingency counts of two labelings: (table keyed by (a, b), row sums, column sums, n).
type Contingency = (
    HashMap<(i64, i64), u64>,
    HashMap<i64, u64>,
    HashMap<i64, u64>,
    u64,
);

fn contingency(a: &[i64], b: &[i64]) -> Contingency {
    let mut table = HashMap::new();
    let mut rows = HashMap::new();
    let mut cols = HashMap::new();
    for (x, y) in a.iter().zip(b) {
        *table.entry((*x, *y)).or_insert(0) += 1;
        *rows.entry(*x).or_insert(0) += 1;
        *cols.entry(*y).or_insert(0) += 1;
    }
    (table, rows, cols, a.len().min(b.len()) as u64)
}

fn pairs(n: u64) -> f64 {
    let n = n as f64;
    n * (n - 1.0) / 2.0
}

/// Adjusted Rand index of two labelings of the same items (1 = identical partitions, ~0 = chance). As
/// scikit-learn's `adjusted_rand_score`, including 1.0 when both put everything in one cluster or every item in
/// its own.
pub fn adjusted_rand_index(a: &[i64], b: &[i64]) -> f64 {
    let (table, rows, cols, n) = contingency(a, b);
    let index: f64 = table.values().map(|&c| pairs(c)).sum();
    let sum_rows: f64 = rows.values().map(|&c| pairs(c)).sum();
    let sum_cols: f64 = cols.values().map(|&c| pairs(c)).sum();
    let total = pairs(n);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sum_rows * sum_cols / total;
    let max = (sum_rows + sum_cols) / 2.0;
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

fn entropy(counts: &HashMap<i64, u64>, n: f64) -> f64 {
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Normalised mutual information with the arithmetic mean of the entropies (scikit-learn's
/// `normalized_mutual_info_score` default): 1 = identical partitions, 0 = independent.
pub fn normalized_mutual_info(a: &[i64], b: &[i64]) -> f64 {
    let (table, rows, cols, n) = contingency(a, b);
    if n == 0 {
        return 1.0;
    }
    let n = n as f64;
    // One cluster on both sides (or identical single-cluster labelings) counts as perfect agreement.
    if rows.len() == 1 && cols.len() == 1 {
        return 1.0;
    }
    let mi: f64 = table
        .iter()
        .map(|(&(x, y), &c)| {
            let pxy = c as f64 / n;
            let px = rows[&x] as f64 / n;
            let py = cols[&y] as f64 / n;
            pxy * (pxy / (px * py)).ln()
        })
        .sum();
    let normaliser = (entropy(&rows, n) + entropy(&cols, n)) / 2.0;
    if normaliser <= 0.0 {
        return 0.0;
    }
    (mi / normaliser).clamp(0.0, 1.0)
}

/// The assignment of rows to columns of a square-or-wide `cost` matrix (rows ≤ columns) with the least total cost
/// (Hungarian algorithm, O(n²m)). `result[i]` is the column of row `i`.
pub fn hungarian(cost: &[Vec<f64>]) -> Vec<usize> {
    let n = cost.len();
    if n == 0 {
        return Vec::new();
    }
    let m = cost[0].len();
    assert!(n <= m, "hungarian: more rows ({n}) than columns ({m})");
    // Potentials u (rows), v (columns), and p[j] = row matched to column j (1-based, 0 = none).
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut result = vec![0usize; n];
    for j in 1..=m {
        if p[j] > 0 {
            result[p[j] - 1] = j - 1;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers scikit-learn 1.x gives for the same label vectors (`adjusted_rand_score`,
    /// `normalized_mutual_info_score`).
    #[test]
    fn agree_with_scikit_learn() {
        let cases: [(&[i64], &[i64], f64, f64); 4] = [
            (
                &[0, 0, 0, 1, 1, 1, 2, 2, 2, 3],
                &[1, 1, 0, 0, 2, 2, 2, 3, 3, 3],
                0.2028985507246377,
                0.5920135846617086,
            ),
            (
                &[0, 0, 1, 1, 2, 2, 2, 2],
                &[5, 5, 5, 7, 7, 9, 9, 9],
                0.36363636363636365,
                0.5916738208094535,
            ),
            (&[0, 0, 1, 1], &[1, 1, 0, 0], 1.0, 1.0),
            (&[0, 0, 0, 0], &[0, 1, 2, 3], 0.0, 0.0),
        ];
        for (a, b, ari, nmi) in cases {
            assert!(
                (adjusted_rand_index(a, b) - ari).abs() < 1e-12,
                "ARI {a:?} {b:?}"
            );
            assert!(
                (normalized_mutual_info(a, b) - nmi).abs() < 1e-12,
                "NMI {a:?} {b:?}"
            );
        }
    }

    #[test]
    fn hungarian_recovers_a_known_permutation() {
        // Centroids of iteration i-1 permuted into iteration i: cost = 1 - similarity, lowest on the permutation.
        let permutation = [3usize, 0, 4, 1, 2];
        let cost: Vec<Vec<f64>> = (0..5)
            .map(|i| {
                (0..5)
                    .map(|j| {
                        if j == permutation[i] {
                            0.05 * i as f64
                        } else {
                            0.9 - 0.01 * (i + j) as f64
                        }
                    })
                    .collect()
            })
            .collect();
        assert_eq!(hungarian(&cost), permutation);
        // A case where greedy choice fails: row 0 prefers column 0, but the optimum gives it column 1.
        let cost = vec![vec![1.0, 2.0], vec![1.5, 10.0]];
        assert_eq!(hungarian(&cost), [1, 0]);
        // Wide: 2 rows, 3 columns.
        let cost = vec![vec![5.0, 1.0, 3.0], vec![2.0, 4.0, 6.0]];
        assert_eq!(hungarian(&cost), [1, 0]);
    }
}
