//! Clustering of embedding spaces: k-means ([`kmeans`]) and `vlmdb cluster` ([`run`]), which writes `clusters`,
//! `centroids` and the inertia of every Lloyd iteration (`metrics`) under one run.

pub mod compare;
pub mod kmeans;
pub mod pca;
pub mod run;
pub mod tracking;
pub mod tsne;
