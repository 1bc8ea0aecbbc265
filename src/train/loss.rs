//! The contrastive losses of `vlmdb train`: symmetric InfoNCE (CLIP) and the two similarity-aware negative
//! weightings of seed 001 (CLIPSE), SANW-Debias and SANW-Bandpass, exactly as CLIPSE's reference code defines
//! them (`src/losses/sanw_debias.py`, `sanw_bandpass.py`), optionally summed over Matryoshka (MRL) widths.
//!
//! For a batch of B pairs with head (or projection) outputs `img`, `txt` (B × D) and logit-scale parameter t: for
//! every width d of the MRL list (the full width when there is none), zᵢ = normalise(img[:, :d]),
//! zₜ = normalise(txt[:, :d]), logits L = eᵗ · zᵢ zₜᵀ (rows images, columns texts); the loss of the width is the
//! mean of the image→text direction on (L, W) and the text→image direction on (Lᵀ, Wᵀ); widths are summed.
//!
//! - **infonce**: per direction `mean_r [logsumexp(L_r) − L_rr]` (CLIP's symmetric cross-entropy).
//! - **SANW**: per direction, with p = softmax(L) per row,
//!   `−mean_r [ log p_rr − log max(Σ_j p_rj · W_rj, 1e-12) ]`.
//!
//! W is a constant (no gradient) from the **pooled encoder outputs before the projection** (for heads over frozen
//! spaces: the frozen input vectors), L2-normalised: the affinity A = α · S_tt + (1 − α) · S_ii with S_tt, S_ii the
//! batch's text–text and image–image cosine matrices, then
//! - **sanw-debias** (α = 0.5, δ = 0.6, λ = 4): W = 1 − σ(λ (A − δ)) — negatives that look like the anchor
//!   (likely false negatives) are down-weighted;
//! - **sanw-bandpass** (α = 0.5, m1 = 0.3, m2 = 0.8, γ = 0.05): W = clamp(σ((A − m1)/γ) · (1 − σ((A − m2)/γ)), 0, 1)
//!   — mid-hard negatives (affinity between m1 and m2) keep their weight, very easy and near-positive ones lose it;
//!
//! W's diagonal is set to 0 and every row is rescaled to sum to B − 1 (the row sum floored at 1e-6).
//!
//! Statistics per step, as CLIPSE logs them: debias `w_mean` (the mean of 1 − W before the rescale, off the
//! diagonal), `w_low_pct` / `w_high_pct` (the percentage of entries of that masked matrix below 1e-3 / above 0.8 —
//! CLIPSE takes the percentage over all B² entries, the zero diagonal included, and so does vlmdb); bandpass
//! `w_mean` (the mean of W off the diagonal) and `band_coverage_pct` (percentage of entries above 0.1).
//! `fixtures/train/make_reference.py` restates these formulas in PyTorch; the tests hold values, gradients and
//! statistics to it.

use candle_core::{D, DType, Tensor};

use crate::error::{Error, Result};

/// Which loss, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "loss", rename_all = "kebab-case")]
pub enum Loss {
    Infonce,
    SanwDebias {
        alpha: f64,
        delta: f64,
        lambda: f64,
    },
    SanwBandpass {
        alpha: f64,
        m1: f64,
        m2: f64,
        gamma: f64,
    },
}

impl Loss {
    /// The loss called `name` with the given parameters (CLIPSE's defaults where a parameter is `None`), checked
    /// for the ranges where the formulas mean something.
    pub fn new(
        name: &str,
        alpha: Option<f64>,
        delta: Option<f64>,
        lambda: Option<f64>,
        band: (Option<f64>, Option<f64>),
        gamma: Option<f64>,
    ) -> Result<Loss> {
        let bad = |message: String| Err(Error::Usage(message));
        let loss = match name {
            "infonce" => Loss::Infonce,
            "sanw-debias" => Loss::SanwDebias {
                alpha: alpha.unwrap_or(0.5),
                delta: delta.unwrap_or(0.6),
                lambda: lambda.unwrap_or(4.0),
            },
            "sanw-bandpass" => Loss::SanwBandpass {
                alpha: alpha.unwrap_or(0.5),
                m1: band.0.unwrap_or(0.3),
                m2: band.1.unwrap_or(0.8),
                gamma: gamma.unwrap_or(0.05),
            },
            other => {
                return bad(format!(
                    "--loss '{other}': expected infonce, sanw-debias or sanw-bandpass"
                ));
            }
        };
        let alpha = |alpha: f64| -> Result<()> {
            if (0.0..=1.0).contains(&alpha) {
                Ok(())
            } else {
                Err(Error::Usage(format!(
                    "--alpha {alpha}: must be in [0, 1] (the text share of the affinity)"
                )))
            }
        };
        let positive = |flag: &str, value: f64| -> Result<()> {
            if value > 0.0 && value.is_finite() {
                Ok(())
            } else {
                Err(Error::Usage(format!("--{flag} {value}: must be positive")))
            }
        };
        match loss {
            Loss::Infonce => {}
            Loss::SanwDebias {
                alpha: a,
                delta,
                lambda,
            } => {
                alpha(a)?;
                if !delta.is_finite() {
                    return bad(format!("--delta {delta}: must be finite"));
                }
                positive("lambda", lambda)?;
            }
            Loss::SanwBandpass {
                alpha: a,
                m1,
                m2,
                gamma,
            } => {
                alpha(a)?;
                if !(m1 < m2 && (-1.0..=1.0).contains(&m1) && (-1.0..=1.0).contains(&m2)) {
                    return bad(format!(
                        "--m1 {m1} --m2 {m2}: need -1 <= m1 < m2 <= 1 (affinities are cosines)"
                    ));
                }
                positive("gamma", gamma)?;
            }
        }
        Ok(loss)
    }

    /// The loss called `name` with parameters by flag name (`alpha`, `delta`, …), as reference files give them.
    pub fn from_params(
        name: &str,
        params: &std::collections::HashMap<String, f64>,
    ) -> Result<Loss> {
        let p = |k: &str| params.get(k).copied();
        Loss::new(
            name,
            p("alpha"),
            p("delta"),
            p("lambda"),
            (p("m1"), p("m2")),
            p("gamma"),
        )
    }

    /// The loss's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::Infonce => "infonce",
            Loss::SanwDebias { .. } => "sanw-debias",
            Loss::SanwBandpass { .. } => "sanw-bandpass",
        }
    }

    /// The weight, before masking and rescaling, of a negative whose affinity to the anchor is `a`.
    pub fn weight(&self, a: f64) -> f64 {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        match *self {
            Loss::Infonce => 1.0,
            Loss::SanwDebias { delta, lambda, .. } => 1.0 - sigmoid(lambda * (a - delta)),
            Loss::SanwBandpass { m1, m2, gamma, .. } => {
                (sigmoid((a - m1) / gamma) * (1.0 - sigmoid((a - m2) / gamma))).clamp(0.0, 1.0)
            }
        }
    }

    fn alpha(&self) -> f64 {
        match *self {
            Loss::Infonce => 0.0,
            Loss::SanwDebias { alpha, .. } | Loss::SanwBandpass { alpha, .. } => alpha,
        }
    }
}

/// A batch's SANW statistics, named as CLIPSE logs them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightStats {
    Debias {
        w_mean: f64,
        w_low_pct: f64,
        w_high_pct: f64,
    },
    Bandpass {
        w_mean: f64,
        band_coverage_pct: f64,
    },
}

impl WeightStats {
    /// (metric name, value) pairs.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        match *self {
            WeightStats::Debias {
                w_mean,
                w_low_pct,
                w_high_pct,
            } => vec![
                ("w_mean", w_mean),
                ("w_low_pct", w_low_pct),
                ("w_high_pct", w_high_pct),
            ],
            WeightStats::Bandpass {
                w_mean,
                band_coverage_pct,
            } => vec![("w_mean", w_mean), ("band_coverage_pct", band_coverage_pct)],
        }
    }
}

/// A batch's loss (a scalar tensor that backpropagates into `img`, `txt` and `logit_scale`) and, for the SANW
/// losses, its weight statistics.
#[derive(Debug)]
pub struct BatchLoss {
    pub loss: Tensor,
    pub weights: Option<WeightStats>,
}

/// Rows scaled to unit length (a tiny floor keeps a zero row finite).
pub fn normalize_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

/// The batch's cosine matrix of `x` on the host.
fn host_cosines(x: &Tensor) -> candle_core::Result<Vec<Vec<f64>>> {
    let z = normalize_rows(&x.detach())?;
    z.matmul(&z.t()?)?.to_dtype(DType::F64)?.to_vec2::<f64>()
}

/// The SANW weight matrix W (B × B, constant, rows rescaled) from the pooled outputs, and its statistics.
pub fn sanw_weights(
    loss: &Loss,
    pooled_img: &Tensor,
    pooled_txt: &Tensor,
) -> candle_core::Result<Option<(Tensor, WeightStats)>> {
    if *loss == Loss::Infonce {
        return Ok(None);
    }
    let s_ii = host_cosines(pooled_img)?;
    let s_tt = host_cosines(pooled_txt)?;
    let b = s_ii.len();
    if s_tt.len() != b {
        return Err(candle_core::Error::Msg(format!(
            "{b} pooled image rows but {} pooled text rows",
            s_tt.len()
        )));
    }
    let alpha = loss.alpha();
    let mut w = vec![0.0f64; b * b];
    let (mut sum, mut low, mut high, mut covered) = (0.0, 0usize, 0usize, 0usize);
    let debias = matches!(loss, Loss::SanwDebias { .. });
    for r in 0..b {
        for j in 0..b {
            if r == j {
                // The masked matrix holds 0 on the diagonal (1 − W masked, or W masked): "low", never "high".
                low += 1;
                continue;
            }
            let value = loss.weight(alpha * s_tt[r][j] + (1.0 - alpha) * s_ii[r][j]);
            w[r * b + j] = value;
            let logged = if debias { 1.0 - value } else { value };
            sum += logged;
            low += usize::from(logged < 1e-3);
            high += usize::from(logged > 0.8);
            covered += usize::from(logged > 0.1);
        }
    }
    for r in 0..b {
        let row = &mut w[r * b..(r + 1) * b];
        let scale = (b as f64 - 1.0) / row.iter().sum::<f64>().max(1e-6);
        row.iter_mut().for_each(|x| *x *= scale);
    }
    let all = (b * b) as f64;
    let off = (b * b - b).max(1) as f64;
    let stats = if debias {
        WeightStats::Debias {
            w_mean: sum / off,
            w_low_pct: 100.0 * low as f64 / all,
            w_high_pct: 100.0 * high as f64 / all,
        }
    } else {
        WeightStats::Bandpass {
            w_mean: sum / off,
            band_coverage_pct: 100.0 * covered as f64 / all,
        }
    };
    let w = Tensor::from_vec(w, (b, b), pooled_img.device())?.to_dtype(pooled_img.dtype())?;
    Ok(Some((w, stats)))
}

/// One direction's loss: row r of `logits` is query r with its positive at column r; `w` the SANW weights of
/// this direction (None: InfoNCE).
fn direction_loss(logits: &Tensor, w: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let b = logits.dim(0)?;
    let eye = Tensor::eye(b, logits.dtype(), logits.device())?;
    let lse = logits.log_sum_exp(1)?;
    let positive = (logits * &eye)?.sum(1)?;
    match w {
        None => (lse - positive)?.mean_all(),
        Some(w) => {
            let log_p = logits.broadcast_sub(&lse.unsqueeze(1)?)?;
            let log_positive = (&log_p * &eye)?.sum(1)?;
            let negatives = (log_p.exp()? * w)?.sum(1)?.maximum(1e-12)?.log()?;
            (negatives - log_positive)?.mean_all()
        }
    }
}

/// The loss of one batch. `dims` are the MRL widths (empty: the full width); `logit_scale` is the parameter t;
/// `pooled` the encoders' pooled outputs (image, text) that the SANW weights come from.
pub fn batch_loss(
    loss: &Loss,
    img: &Tensor,
    txt: &Tensor,
    logit_scale: &Tensor,
    dims: &[usize],
    pooled: (&Tensor, &Tensor),
) -> candle_core::Result<BatchLoss> {
    let full = img.dim(1)?;
    let widths: Vec<usize> = if dims.is_empty() {
        vec![full]
    } else {
        dims.to_vec()
    };
    let weights = sanw_weights(loss, pooled.0, pooled.1)?;
    let (w, w_t) = match &weights {
        Some((w, _)) => (Some(w.clone()), Some(w.t()?.contiguous()?)),
        None => (None, None),
    };
    let scale = logit_scale.exp()?;
    let mut total: Option<Tensor> = None;
    for d in widths {
        let zi = normalize_rows(&img.narrow(1, 0, d)?)?;
        let zt = normalize_rows(&txt.narrow(1, 0, d)?)?;
        let logits = zi.matmul(&zt.t()?)?.broadcast_mul(&scale)?;
        let i2t = direction_loss(&logits, w.as_ref())?;
        let t2i = direction_loss(&logits.t()?.contiguous()?, w_t.as_ref())?;
        let width_loss = ((i2t + t2i)? * 0.5)?;
        total = Some(match total {
            None => width_loss,
            Some(t) => (t + width_loss)?,
        });
    }
    let loss = total.ok_or_else(|| candle_core::Error::Msg("no widths".into()))?;
    Ok(BatchLoss {
        loss,
        weights: weights.map(|(_, stats)| stats),
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[derive(serde::Deserialize)]
    struct Reference {
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        loss: String,
        params: std::collections::HashMap<String, f64>,
        dims: Vec<usize>,
        t: f64,
        img: Vec<Vec<f64>>,
        txt: Vec<Vec<f64>>,
        pool_img: Vec<Vec<f64>>,
        pool_txt: Vec<Vec<f64>>,
        value: f64,
        grad_img: Vec<Vec<f64>>,
        grad_txt: Vec<Vec<f64>>,
        grad_t: f64,
        stats: std::collections::HashMap<String, f64>,
    }

    fn matrix(rows: &[Vec<f64>], dtype: DType) -> Tensor {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("tensor")
    }

    /// max |a − b| / max(1, |b|) over the entries.
    fn max_rel(a: &Tensor, b: &[Vec<f64>]) -> f64 {
        let a = a
            .to_dtype(DType::F64)
            .and_then(|a| a.to_vec2::<f64>())
            .expect("2-d");
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
            .fold(0.0, f64::max)
    }

    fn loss_of(case: &Case) -> Loss {
        Loss::from_params(&case.loss, &case.params).expect("valid parameters")
    }

    /// Every loss on random batches equals the PyTorch reference of CLIPSE's formulas: value, the gradients of the
    /// head outputs and the logit scale, and the logged statistics — in f64 (1e-9) and in f32 as training runs
    /// (1e-5 relative).
    #[test]
    fn losses_and_gradients_equal_the_pytorch_reference() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/train/reference.json"
        ))
        .expect("fixtures/train/reference.json (python3 fixtures/train/make_reference.py)");
        let reference: Reference = serde_json::from_str(&text).expect("reference json");
        assert!(reference.cases.len() >= 7);
        for case in &reference.cases {
            let loss = loss_of(case);
            for (dtype, tol) in [(DType::F64, 1e-9), (DType::F32, 1e-5)] {
                let img = Var::from_tensor(&matrix(&case.img, dtype)).expect("var");
                let txt = Var::from_tensor(&matrix(&case.txt, dtype)).expect("var");
                let t = Var::from_tensor(
                    &Tensor::new(case.t, &Device::Cpu)
                        .and_then(|t| t.to_dtype(dtype))
                        .expect("t"),
                )
                .expect("var");
                let dims = if case.dims.len() == 1 {
                    vec![]
                } else {
                    case.dims.clone()
                };
                let pool_img = matrix(&case.pool_img, dtype);
                let pool_txt = matrix(&case.pool_txt, dtype);
                let out = batch_loss(
                    &loss,
                    img.as_tensor(),
                    txt.as_tensor(),
                    t.as_tensor(),
                    &dims,
                    (&pool_img, &pool_txt),
                )
                .expect("loss");
                let value = out
                    .loss
                    .to_dtype(DType::F64)
                    .and_then(|v| v.to_scalar::<f64>())
                    .expect("scalar");
                let name = format!("{} ({dtype:?})", case.name);
                assert!(
                    (value - case.value).abs() / case.value.abs().max(1.0) < tol,
                    "{name}: {value} vs {}",
                    case.value
                );
                let grads = out.loss.backward().expect("backward");
                let gi = grads.get(img.as_tensor()).expect("grad img");
                let gt = grads.get(txt.as_tensor()).expect("grad txt");
                let gs = grads
                    .get(t.as_tensor())
                    .expect("grad t")
                    .to_dtype(DType::F64)
                    .and_then(|g| g.to_scalar::<f64>())
                    .expect("scalar");
                assert!(max_rel(gi, &case.grad_img) < tol, "{name}: grad img");
                assert!(max_rel(gt, &case.grad_txt) < tol, "{name}: grad txt");
                assert!(
                    (gs - case.grad_t).abs() / case.grad_t.abs().max(1.0) < tol,
                    "{name}: grad t {gs} vs {}",
                    case.grad_t
                );
                let logged: std::collections::HashMap<String, f64> = out
                    .weights
                    .map(|w| w.metrics())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                assert_eq!(
                    logged.keys().collect::<std::collections::BTreeSet<_>>(),
                    case.stats.keys().collect(),
                    "{name}"
                );
                for (k, v) in &case.stats {
                    assert!(
                        (logged[k] - v).abs() < tol * 100.0,
                        "{name}: {k} {} vs {v}",
                        logged[k]
                    );
                }
            }
        }
    }

    #[test]
    fn parameters_out_of_range_are_refused_by_name() {
        let err = Loss::new("sanw-debias", Some(1.5), None, None, (None, None), None).unwrap_err();
        assert!(err.to_string().contains("--alpha 1.5"), "{err}");
        let err = Loss::new(
            "sanw-bandpass",
            None,
            None,
            None,
            (Some(0.9), Some(0.1)),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("m1 < m2"), "{err}");
        let err = Loss::new("triplet", None, None, None, (None, None), None).unwrap_err();
        assert!(err.to_string().contains("'triplet'"), "{err}");
        let err =
            Loss::new("sanw-bandpass", None, None, None, (None, None), Some(0.0)).unwrap_err();
        assert!(err.to_string().contains("--gamma 0"), "{err}");
    }

    #[test]
    fn defaults_are_clipses() {
        let none = (None, None);
        assert_eq!(
            Loss::new("sanw-debias", None, None, None, none, None).unwrap(),
            Loss::SanwDebias {
                alpha: 0.5,
                delta: 0.6,
                lambda: 4.0
            }
        );
        assert_eq!(
            Loss::new("sanw-bandpass", None, None, None, none, None).unwrap(),
            Loss::SanwBandpass {
                alpha: 0.5,
                m1: 0.3,
                m2: 0.8,
                gamma: 0.05
            }
        );
        let debias = Loss::new("sanw-debias", None, None, None, none, None).unwrap();
        assert!((debias.weight(0.6) - 0.5).abs() < 1e-12); // σ(0) at the threshold
        let band = Loss::new("sanw-bandpass", None, None, None, none, None).unwrap();
        assert!(band.weight(0.55) > 0.98); // mid band
        assert!(band.weight(0.0) < 1e-2 && band.weight(1.0) < 2e-2); // too easy, near-positive
    }
}
