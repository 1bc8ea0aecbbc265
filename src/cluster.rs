//! Clustering of embedding spaces: k-means ([`kmeans`]) and `vlmdb cluster` ([`run`]), which writes `clusters`,
//! `centroids` and the inertia of every Lloyd iteration (`metrics`) under one run.

pub mod compare;
pub mod kmeans;
pub mod pca;
pub mod tracking;
pub mod tsne;

/// The committed reference data of `fixtures/cluster/make_reference.py`, for the tests that compare with
/// scikit-learn.
#[cfg(test)]
pub(crate) fn reference_cases() -> Vec<(String, serde_json::Value, crate::eval::space::Vectors)> {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/cluster/reference.json"))
            .expect("reference.json");
    let cases = reference.as_object().expect("an object of cases");
    cases
        .iter()
        .map(|(name, case)| {
            let dim = case["dim"].as_u64().expect("dim") as usize;
            let rows = case["vectors"]
                .as_array()
                .expect("vectors")
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = v
                        .as_array()
                        .expect("a vector")
                        .iter()
                        .map(|x| x.as_f64().expect("a number") as f32)
                        .collect();
                    (format!("{i:05}"), v)
                })
                .collect();
            let data = crate::eval::space::Vectors::from_rows(name, dim, rows).expect("vectors");
            (name.clone(), case.clone(), data)
        })
        .collect()
}
