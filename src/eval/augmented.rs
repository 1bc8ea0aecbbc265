//! Which composed-retrieval pairs a command reads: the dataset's own, the ones `vlmdb augment pairs` wrote (their
//! `source` is set), or both. Evaluation always scores the dataset's own pairs; training and mining choose.

use datafusion::prelude::{Expr, col};

use crate::error::{Error, Result};

/// The pairs read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Augmented {
    /// Every pair.
    #[default]
    Include,
    /// The dataset's own pairs only.
    Exclude,
    /// Only the augmented pairs.
    Only,
}

impl Augmented {
    /// The name SQL files take (`$augmented`).
    pub fn name(self) -> &'static str {
        match self {
            Augmented::Include => "include",
            Augmented::Exclude => "exclude",
            Augmented::Only => "only",
        }
    }

    /// The filter on `pairs` (`None`: every pair).
    pub fn predicate(self) -> Option<Expr> {
        match self {
            Augmented::Include => None,
            Augmented::Exclude => Some(col("source").is_null()),
            Augmented::Only => Some(col("source").is_not_null()),
        }
    }
}

impl std::str::FromStr for Augmented {
    type Err = Error;
    fn from_str(s: &str) -> Result<Augmented> {
        match s {
            "include" => Ok(Augmented::Include),
            "exclude" => Ok(Augmented::Exclude),
            "only" => Ok(Augmented::Only),
            other => Err(Error::Usage(format!(
                "--augmented '{other}': expected include, exclude or only"
            ))),
        }
    }
}
