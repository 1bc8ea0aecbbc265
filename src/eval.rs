//! Retrieval over embedding spaces, the compute behind the `knn`, `vector_search` and `retrieval_ranks` SQL
//! functions and `vlmdb eval` / `vlmdb mine`: spaces loaded into memory ([`space`]), score blocks from Candle matrix
//! products ([`scores`]), a running top-k ([`topk`], [`knn`]) and positive ranks ([`ranks`], [`retrieval`]).

pub mod ann;
pub mod augmented;
pub mod hnsw;
pub mod knn;
pub mod nearest;
pub mod ranks;
pub mod recall;
pub mod retrieval;
pub mod scores;
pub mod space;
pub mod topk;
