//! Ground floor: the CPU kernels anyone may call. The score kernel ([`kernel`], `C = Q · Kᵀ` in AVX-512 register
//! tiles), the threshold scan the rank counters use ([`scan`]) and vectorised `exp`/`erf`/GELU with their AVX-512
//! dispatch ([`fastmath`]). They know nothing of stores, SQL or models.

pub mod fastmath;
pub mod kernel;
pub mod scan;
