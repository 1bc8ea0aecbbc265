//! Principal component analysis of a space's vectors, as scikit-learn's `PCA` defines it: the data centred on its
//! mean, the covariance (÷ n − 1) from one f64 Candle matrix product, its symmetric eigendecomposition
//! (nalgebra), components by decreasing variance, each component's sign chosen so that its largest-magnitude
//! loading is positive (scikit-learn's `svd_flip` on the components), coordinates = centred data × components.

use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{Error, Result};
use crate::eval::space::Vectors;

/// A fitted PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// components × dim, row-major, unit length.
    pub components: Vec<Vec<f64>>,
    /// The variance along each component (scikit-learn's `explained_variance_`).
    pub variance: Vec<f64>,
    /// Its share of the total variance (`explained_variance_ratio_`).
    pub ratio: Vec<f64>,
    /// Every row's coordinates: rows × components.
    pub coords: Vec<Vec<f64>>,
}

/// Fit `components` components to the rows of `data` and project them.
pub fn pca(data: &Vectors, components: usize, device: &Device) -> Result<Pca> {
    let (n, dim) = (data.len(), data.dim);
    if n < 2 {
        return Err(Error::Usage(format!(
            "PCA needs at least 2 vectors; there are {n}"
        )));
    }
    if components == 0 || components > dim.min(n) {
        return Err(Error::Usage(format!(
            "PCA components must be between 1 and {} (the smaller of {n} vectors and {dim} dimensions), got {components}",
            dim.min(n)
        )));
    }
    let mut mean = vec![0f64; dim];
    for i in 0..n {
        for (m, x) in mean.iter_mut().zip(data.row(i)) {
            *m += f64::from(*x);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centred: Vec<f64> = (0..n)
        .flat_map(|i| {
            data.row(i)
                .iter()
                .zip(&mean)
                .map(|(x, m)| f64::from(*x) - m)
        })
        .collect();
    let x =
        Tensor::from_slice(&centred, (n, dim), device).map_err(Error::tensor("PCA covariance"))?;
    let cov = x
        .t()
        .and_then(|t| t.matmul(&x))
        .and_then(|c| c.to_dtype(DType::F64))
        .and_then(|c| c.flatten_all())
        .and_then(|c| c.to_vec1::<f64>())
        .map_err(Error::tensor("PCA covariance"))?;
    let cov = DMatrix::from_row_slice(dim, dim, &cov) / (n as f64 - 1.0);
    let total: f64 = cov.trace();
    let eigen = SymmetricEigen::new(cov);
    let mut order: Vec<usize> = (0..dim).collect();
    order.sort_by(|&a, &b| {
        eigen.eigenvalues[b]
            .total_cmp(&eigen.eigenvalues[a])
            .then(a.cmp(&b))
    });
    let mut comps = Vec::with_capacity(components);
    let mut variance = Vec::with_capacity(components);
    for &j in order.iter().take(components) {
        let mut v: Vec<f64> = eigen.eigenvectors.column(j).iter().copied().collect();
        let largest = v
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()).then(b.0.cmp(&a.0)))
            .map_or(0, |(i, _)| i);
        if v[largest] < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        comps.push(v);
        variance.push(eigen.eigenvalues[j].max(0.0));
    }
    let ratio = variance
        .iter()
        .map(|v| if total > 0.0 { v / total } else { 0.0 })
        .collect();
    let coords = (0..n)
        .map(|i| {
            let row = &centred[i * dim..(i + 1) * dim];
            comps
                .iter()
                .map(|c| row.iter().zip(c).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect();
    Ok(Pca {
        components: comps,
        variance,
        ratio,
        coords,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Explained variance, its ratio and coordinates equal scikit-learn's to 1e-5 on the committed reference data
    /// of `fixtures/cluster/make_reference.py`.
    #[test]
    fn matches_scikit_learn() {
        for (name, case, data) in crate::cluster::reference_cases() {
            let fitted = pca(&data, 5, &Device::Cpu).unwrap();
            let want = &case["pca"];
            for (key, have) in [("variance", &fitted.variance), ("ratio", &fitted.ratio)] {
                for (j, w) in want[key].as_array().unwrap().iter().enumerate() {
                    let w = w.as_f64().unwrap();
                    assert!(
                        (have[j] - w).abs() < 1e-5,
                        "{name} {key}[{j}]: {} vs {w}",
                        have[j]
                    );
                }
            }
            for (i, row) in want["coords"].as_array().unwrap().iter().enumerate() {
                for (j, w) in row.as_array().unwrap().iter().enumerate() {
                    let w = w.as_f64().unwrap();
                    assert!(
                        (fitted.coords[i][j] - w).abs() < 1e-5,
                        "{name} coords[{i}][{j}]: {} vs {w}",
                        fitted.coords[i][j]
                    );
                }
            }
        }
    }

    #[test]
    fn bad_component_counts_are_errors() {
        let data = Vectors::from_rows(
            "t",
            2,
            vec![("a".into(), vec![1.0, 0.0]), ("b".into(), vec![0.0, 1.0])],
        )
        .unwrap();
        assert!(
            pca(&data, 3, &Device::Cpu)
                .unwrap_err()
                .to_string()
                .contains("between 1 and 2")
        );
        let one = Vectors::from_rows("t", 2, vec![("a".into(), vec![1.0, 0.0])]).unwrap();
        assert!(
            pca(&one, 1, &Device::Cpu)
                .unwrap_err()
                .to_string()
                .contains("at least 2 vectors")
        );
    }
}
