//! Retrieval over embedding spaces, the compute behind the `knn`, `vector_search` and `retrieval_ranks` SQL
//! functions and `vlmdb eval` / `vlmdb mine`: spaces loaded into memory ([`space`]), score blocks from Candle matrix
//! products ([`scores`]), a running top-k ([`topk`], [`knn`]) and positive ranks ([`ranks`], [`retrieval`]).

pub mod evaluate;
pub mod hnsw;
pub mod index;
pub mod kernel;
pub mod knn;
pub mod ranks;
pub mod retrieval;
pub mod scan;
pub mod scores;
pub mod space;
pub mod topk;
