//! The contrastive losses of `vlmdb train`: symmetric InfoNCE (CLIP) and the two similarity-aware negative
//! weightings of seed S1 (CLIPSE), SANW-Debias and SANW-Bandpass, optionally summed over Matryoshka (MRL) widths.
//!
//! For a batch of B pairs with raw head outputs `img`, `txt` (B × D) and logit-scale parameter t (scale s = eᵗ):
//! for every width d of the MRL list (the full width when there is none), zᵢ = normalise(img[:, :d]),
//! zₜ = normalise(txt[:, :d]), cosines C = zᵢ zₜᵀ (rows images, columns texts), logits L = s·C. In each direction —
//! image→text with (L, C), text→image with (Lᵀ, Cᵀ) — row i is query i and its positive is column i:
//!
//! ```text
//! ℓᵢ = −Lᵢᵢ + log( e^{Lᵢᵢ} + Σ_{j≠i} wᵢⱼ e^{Lᵢⱼ} )        loss_d = ½ (mean ℓ over i2t + mean ℓ over t2i)
//! loss = Σ_d loss_d
//! ```
//!
//! The weights w come from the cosines of that direction and width:
//! - **infonce**: wᵢⱼ = 1 (exactly CLIP's symmetric cross-entropy).
//! - **sanw-debias** (α strength, δ threshold, λ weighting): with the gap gᵢⱼ = Cᵢᵢ − Cᵢⱼ between the positive and
//!   the negative, wᵢⱼ = 1 − α · clamp(1 − gᵢⱼ/δ, 0, 1)^λ. Negatives at least δ below the positive keep weight 1;
//!   those as close as the positive (or closer — likely false negatives) fall to 1 − α; λ shapes the ramp.
//! - **sanw-bandpass** (α strength, m1 < m2 band, γ weighting): with the bump bᵢⱼ = clamp(4 (Cᵢⱼ − m1)(m2 − Cᵢⱼ) /
//!   (m2 − m1)², 0, 1)^γ (1 at the band's centre, 0 at and outside its edges), wᵢⱼ = 1 + α (2 bᵢⱼ − 1): mid-hard
//!   negatives get up to 1 + α, very easy and very hard ones 1 − α; γ < 1 widens the emphasis, γ > 1 narrows it.
//!
//! **The weights carry no gradient**: they are computed from detached cosines and enter the loss as constants
//! (as in CLIPSE, where they are built under `no_grad`), so they re-weight the negatives' share of the softmax
//! without the model being pushed to game the weights themselves. `tests` check both the loss values and the
//! gradients against PyTorch (`fixtures/train/make_reference.py`).

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
    /// The loss called `name` with the given parameters (the defaults of seed S1's conservative settings where
    /// a parameter is `None`), checked for the ranges where the weights stay positive and the band is a band.
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
                alpha: alpha.unwrap_or(0.1),
                delta: delta.unwrap_or(0.2),
                lambda: lambda.unwrap_or(0.5),
            },
            "sanw-bandpass" => Loss::SanwBandpass {
                alpha: alpha.unwrap_or(0.1),
                m1: band.0.unwrap_or(0.1),
                m2: band.1.unwrap_or(0.9),
                gamma: gamma.unwrap_or(0.5),
            },
            other => {
                return bad(format!(
                    "--loss '{other}': expected infonce, sanw-debias or sanw-bandpass"
                ));
            }
        };
        let alpha = |alpha: f64| -> Result<()> {
            if (0.0..1.0).contains(&alpha) {
                Ok(())
            } else {
                Err(Error::Usage(format!("--alpha {alpha}: must be in [0, 1)")))
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
                positive("delta", delta)?;
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
                        "--m1 {m1} --m2 {m2}: need -1 <= m1 < m2 <= 1 (cosine similarities)"
                    ));
                }
                positive("gamma", gamma)?;
            }
        }
        Ok(loss)
    }

    /// The weight of a negative with cosine `negative` to a query whose positive has cosine `positive`.
    pub fn weight(&self, positive: f64, negative: f64) -> f64 {
        match *self {
            Loss::Infonce => 1.0,
            Loss::SanwDebias {
                alpha,
                delta,
                lambda,
            } => {
                let gap = positive - negative;
                1.0 - alpha * (1.0 - gap / delta).clamp(0.0, 1.0).powf(lambda)
            }
            Loss::SanwBandpass {
                alpha,
                m1,
                m2,
                gamma,
            } => {
                let bump = (4.0 * (negative - m1) * (m2 - negative) / ((m2 - m1) * (m2 - m1)))
                    .clamp(0.0, 1.0)
                    .powf(gamma);
                1.0 + alpha * (2.0 * bump - 1.0)
            }
        }
    }
}

/// Statistics of the negatives' weights (over both directions and every MRL width of a batch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WeightStats {
    pub mean: f64,
    /// Share of negatives with weight below 1.
    pub down: f64,
    /// Share of negatives with weight above 1.
    pub up: f64,
}

#[derive(Debug, Default)]
struct WeightTally {
    sum: f64,
    down: usize,
    up: usize,
    n: usize,
}

impl WeightTally {
    fn add(&mut self, w: f64) {
        self.sum += w;
        self.n += 1;
        if w < 1.0 - 1e-9 {
            self.down += 1;
        } else if w > 1.0 + 1e-9 {
            self.up += 1;
        }
    }

    fn stats(&self) -> WeightStats {
        if self.n == 0 {
            return WeightStats {
                mean: 1.0,
                ..WeightStats::default()
            };
        }
        let n = self.n as f64;
        WeightStats {
            mean: self.sum / n,
            down: self.down as f64 / n,
            up: self.up as f64 / n,
        }
    }
}

/// A batch's loss (a scalar tensor that backpropagates into `img`, `txt` and `logit_scale`) and its weights.
#[derive(Debug)]
pub struct BatchLoss {
    pub loss: Tensor,
    pub weights: WeightStats,
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

/// The mean weighted cross-entropy of one direction: row i of `logits` is query i, positive at column i.
/// `log_w` holds log wᵢⱼ (0 on the diagonal).
fn direction_loss(logits: &Tensor, log_w: &Tensor) -> candle_core::Result<Tensor> {
    let b = logits.dim(0)?;
    let eye = Tensor::eye(b, logits.dtype(), logits.device())?;
    let positive = (logits * &eye)?.sum(1)?;
    let denominator = (logits + log_w)?.log_sum_exp(1)?;
    (denominator - positive)?.mean_all()
}

/// log w of one direction from its (detached) cosines, tallying the weights of the negatives.
fn log_weights(
    loss: &Loss,
    cosines: &Tensor,
    tally: &mut WeightTally,
) -> candle_core::Result<Tensor> {
    let b = cosines.dim(0)?;
    if *loss == Loss::Infonce {
        tally.sum += (b * (b - 1)) as f64;
        tally.n += b * (b - 1);
        return Tensor::zeros((b, b), cosines.dtype(), cosines.device());
    }
    let c = cosines.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let mut out = vec![0.0f64; b * b];
    for i in 0..b {
        for j in 0..b {
            if i != j {
                let w = loss.weight(c[i][i], c[i][j]);
                tally.add(w);
                out[i * b + j] = w.ln();
            }
        }
    }
    Tensor::from_vec(out, (b, b), cosines.device())?.to_dtype(cosines.dtype())
}

/// The loss of one batch. `dims` are the MRL widths (empty: the full width); `logit_scale` is the parameter t.
pub fn batch_loss(
    loss: &Loss,
    img: &Tensor,
    txt: &Tensor,
    logit_scale: &Tensor,
    dims: &[usize],
) -> candle_core::Result<BatchLoss> {
    let full = img.dim(1)?;
    let widths: Vec<usize> = if dims.is_empty() {
        vec![full]
    } else {
        dims.to_vec()
    };
    let scale = logit_scale.exp()?;
    let mut tally = WeightTally::default();
    let mut total: Option<Tensor> = None;
    for d in widths {
        let zi = normalize_rows(&img.narrow(1, 0, d)?)?;
        let zt = normalize_rows(&txt.narrow(1, 0, d)?)?;
        let cosines = zi.matmul(&zt.t()?)?;
        let logits = cosines.broadcast_mul(&scale)?;
        let detached = cosines.detach();
        let i2t = direction_loss(&logits, &log_weights(loss, &detached, &mut tally)?)?;
        let logits_t = logits.t()?.contiguous()?;
        let t2i = direction_loss(
            &logits_t,
            &log_weights(loss, &detached.t()?.contiguous()?, &mut tally)?,
        )?;
        let width_loss = ((i2t + t2i)? * 0.5)?;
        total = Some(match total {
            None => width_loss,
            Some(t) => (t + width_loss)?,
        });
    }
    let loss = total.ok_or_else(|| candle_core::Error::Msg("no widths".into()))?;
    Ok(BatchLoss {
        loss,
        weights: tally.stats(),
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[derive(serde::Deserialize)]
    struct Reference {
        img: Vec<Vec<f64>>,
        txt: Vec<Vec<f64>>,
        t: f64,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        loss: String,
        params: std::collections::HashMap<String, f64>,
        dims: Vec<usize>,
        value: f64,
        grad_img: Vec<Vec<f64>>,
        grad_txt: Vec<Vec<f64>>,
        grad_t: f64,
        weight_mean: f64,
        weight_down: f64,
        weight_up: f64,
        grad_img_if_weights_had_gradient: Vec<Vec<f64>>,
    }

    fn matrix(rows: &[Vec<f64>]) -> Tensor {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).expect("tensor")
    }

    fn max_diff(a: &Tensor, b: &[Vec<f64>]) -> f64 {
        let a = a.to_vec2::<f64>().expect("2-d");
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// Every loss on the 3 × 3 example equals PyTorch's, value, gradients (weights detached) and weight statistics;
    /// for the SANW losses the gradient differs from the one PyTorch gets when the weights are not detached.
    #[test]
    fn losses_and_gradients_equal_the_pytorch_reference() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/train/reference.json"
        ))
        .expect("fixtures/train/reference.json (python3 fixtures/train/make_reference.py)");
        let reference: Reference = serde_json::from_str(&text).expect("reference json");
        assert!(reference.cases.len() >= 6);
        for case in &reference.cases {
            let p = |k: &str| case.params.get(k).copied();
            let loss = Loss::new(
                &case.loss,
                p("alpha"),
                p("delta"),
                p("lambda"),
                (p("m1"), p("m2")),
                p("gamma"),
            )
            .expect("valid parameters");
            let img = Var::from_tensor(&matrix(&reference.img)).expect("var");
            let txt = Var::from_tensor(&matrix(&reference.txt)).expect("var");
            let t =
                Var::from_tensor(&Tensor::new(reference.t, &Device::Cpu).expect("t")).expect("var");
            let dims = if case.dims == [3] {
                vec![]
            } else {
                case.dims.clone()
            };
            let out = batch_loss(
                &loss,
                img.as_tensor(),
                txt.as_tensor(),
                t.as_tensor(),
                &dims,
            )
            .expect("loss");
            let value = out.loss.to_scalar::<f64>().expect("scalar");
            assert!(
                (value - case.value).abs() < 1e-10,
                "{}: {value} vs {}",
                case.name,
                case.value
            );
            let grads = out.loss.backward().expect("backward");
            let gi = grads.get(img.as_tensor()).expect("grad img");
            let gt = grads.get(txt.as_tensor()).expect("grad txt");
            let gs = grads
                .get(t.as_tensor())
                .expect("grad t")
                .to_scalar::<f64>()
                .expect("scalar");
            assert!(
                max_diff(gi, &case.grad_img) < 1e-9,
                "{}: grad img",
                case.name
            );
            assert!(
                max_diff(gt, &case.grad_txt) < 1e-9,
                "{}: grad txt",
                case.name
            );
            assert!(
                (gs - case.grad_t).abs() < 1e-9,
                "{}: grad t {gs} vs {}",
                case.name,
                case.grad_t
            );
            assert!(
                (out.weights.mean - case.weight_mean).abs() < 1e-12,
                "{}",
                case.name
            );
            assert!(
                (out.weights.down - case.weight_down).abs() < 1e-12,
                "{}",
                case.name
            );
            assert!(
                (out.weights.up - case.weight_up).abs() < 1e-12,
                "{}",
                case.name
            );
            if case.loss != "infonce" {
                assert!(
                    max_diff(gi, &case.grad_img_if_weights_had_gradient) > 1e-6,
                    "{}: the weights would have changed the gradient had they carried one",
                    case.name
                );
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
    }

    #[test]
    fn weights_follow_their_formulas_at_the_edges() {
        let debias = Loss::new(
            "sanw-debias",
            Some(0.3),
            Some(0.5),
            Some(2.0),
            (None, None),
            None,
        )
        .unwrap();
        assert_eq!(debias.weight(0.9, 0.3), 1.0); // gap 0.6 >= delta
        assert!((debias.weight(0.9, 0.9) - 0.7).abs() < 1e-12); // as close as the positive
        assert!((debias.weight(0.5, 0.9) - 0.7).abs() < 1e-12); // closer than the positive
        let band = Loss::new(
            "sanw-bandpass",
            Some(0.2),
            None,
            None,
            (Some(0.1), Some(0.9)),
            Some(1.0),
        )
        .unwrap();
        assert!((band.weight(1.0, 0.5) - 1.2).abs() < 1e-12); // band centre
        assert!((band.weight(1.0, 0.95) - 0.8).abs() < 1e-12); // too hard
        assert!((band.weight(1.0, -0.2) - 0.8).abs() < 1e-12); // too easy
    }
}
