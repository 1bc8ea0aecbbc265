//! diffusers' `EulerAncestralDiscreteScheduler` (SDXL-Turbo's and many SD pipelines' own), step for step: the
//! inference timesteps by the configured spacing (trailing spacing with a fractional step ratio, as diffusers
//! rounds it), σ = √((1 − ᾱ)/ᾱ) interpolated at them, inputs scaled by 1/√(σ² + 1), and each step an Euler step
//! to σ_down plus noise · σ_up. candle ships this scheduler too, but draws the ancestral noise from its unseedable
//! CPU generator and truncates the timesteps to integers; here the noise comes from the caller (vlmdb's seeded RNG,
//! or a reference's own noise in a parity test), so the same seed gives the same image.

use candle_core::{Result, Tensor};
use candle_transformers::models::stable_diffusion::schedulers::{
    BetaSchedule, PredictionType, TimestepSpacing,
};

/// The parts of a scheduler config this scheduler reads.
#[derive(Debug, Clone, Copy)]
pub struct EulerAncestralConfig {
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub prediction_type: PredictionType,
    pub train_timesteps: usize,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
}

/// The schedule of one sampling run.
#[derive(Debug, Clone)]
pub struct EulerAncestral {
    timesteps: Vec<f64>,
    /// One per timestep, then 0.
    sigmas: Vec<f64>,
    prediction: PredictionType,
    spacing: TimestepSpacing,
}

impl EulerAncestral {
    /// The schedule for `steps` inference steps.
    pub fn new(config: &EulerAncestralConfig, steps: usize) -> Result<EulerAncestral> {
        let t = config.train_timesteps;
        if steps == 0 || steps > t {
            candle_core::bail!("steps must be between 1 and {t}, not {steps}");
        }
        if matches!(config.prediction_type, PredictionType::Sample) {
            candle_core::bail!(
                "prediction_type sample is not supported by the Euler ancestral scheduler"
            );
        }
        let timesteps: Vec<f64> = match config.timestep_spacing {
            TimestepSpacing::Linspace => (0..steps)
                .rev()
                .map(|i| {
                    if steps == 1 {
                        0.0
                    } else {
                        i as f64 * (t - 1) as f64 / (steps - 1) as f64
                    }
                })
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = t / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + config.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = t as f64 / steps as f64;
                (0..steps)
                    .map(|i| (t as f64 - i as f64 * ratio).round_ties_even() - 1.0)
                    .collect()
            }
        };
        let betas: Vec<f64> = (0..t)
            .map(|i| {
                let f = if t == 1 {
                    0.0
                } else {
                    i as f64 / (t - 1) as f64
                };
                match config.beta_schedule {
                    BetaSchedule::Linear => {
                        config.beta_start + f * (config.beta_end - config.beta_start)
                    }
                    BetaSchedule::ScaledLinear => {
                        let (a, b) = (config.beta_start.sqrt(), config.beta_end.sqrt());
                        (a + f * (b - a)).powi(2)
                    }
                    BetaSchedule::SquaredcosCapV2 => {
                        let bar = |x: f64| {
                            ((x + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                                .cos()
                                .powi(2)
                        };
                        let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                        (1.0 - bar(t2) / bar(t1)).min(0.999)
                    }
                }
            })
            .collect();
        let mut cumprod = 1.0;
        let all: Vec<f64> = betas
            .iter()
            .map(|beta| {
                cumprod *= 1.0 - beta;
                ((1.0 - cumprod) / cumprod).sqrt()
            })
            .collect();
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&x| interp(x, &all)).collect();
        sigmas.push(0.0);
        Ok(EulerAncestral {
            timesteps,
            sigmas,
            prediction: config.prediction_type,
            spacing: config.timestep_spacing,
        })
    }

    /// The timesteps, first to last.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// The scale of the initial noise: the largest σ (trailing and linspace spacing), else √(σ² + 1).
    pub fn init_noise_sigma(&self) -> f64 {
        let max = self.sigmas.iter().copied().fold(0.0, f64::max);
        match self.spacing {
            TimestepSpacing::Trailing | TimestepSpacing::Linspace => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        }
    }

    /// The UNet's input at step `i`: `sample / √(σ² + 1)`.
    pub fn scale_model_input(&self, sample: &Tensor, i: usize) -> Result<Tensor> {
        let sigma = self.sigmas[i];
        sample / (sigma * sigma + 1.0).sqrt()
    }

    /// The sample after step `i`, given the model's output there and standard normal `noise` of the sample's shape.
    pub fn step(
        &self,
        output: &Tensor,
        i: usize,
        sample: &Tensor,
        noise: &Tensor,
    ) -> Result<Tensor> {
        let (from, to) = (self.sigmas[i], self.sigmas[i + 1]);
        let original = match self.prediction {
            PredictionType::VPrediction => {
                ((output * (-from / (from * from + 1.0).sqrt()))?
                    + (sample / (from * from + 1.0))?)?
            }
            _ => (sample - (output * from)?)?,
        };
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).max(0.0).sqrt();
        let derivative = ((sample - original)? / from)?;
        let previous = (sample + (derivative * (down - from))?)?;
        previous + (noise * up)?
    }
}

/// Linear interpolation of `values` (at 0, 1, 2, …) at `x`, clamped to the ends (numpy's `interp`).
fn interp(x: f64, values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    if x <= 0.0 {
        return values[0];
    }
    let last = values.len() - 1;
    if x >= last as f64 {
        return values[last];
    }
    let i = x.floor() as usize;
    let f = x - i as f64;
    values[i] + f * (values[i + 1] - values[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(spacing: TimestepSpacing) -> EulerAncestralConfig {
        EulerAncestralConfig {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            prediction_type: PredictionType::Epsilon,
            train_timesteps: 1000,
            timestep_spacing: spacing,
            steps_offset: 1,
        }
    }

    #[test]
    fn timesteps_follow_diffusers_spacing() {
        let trailing =
            EulerAncestral::new(&config(TimestepSpacing::Trailing), 3).expect("schedule");
        assert_eq!(trailing.timesteps(), [999.0, 666.0, 332.0]);
        let leading = EulerAncestral::new(&config(TimestepSpacing::Leading), 4).expect("schedule");
        assert_eq!(leading.timesteps(), [751.0, 501.0, 251.0, 1.0]);
        let linspace =
            EulerAncestral::new(&config(TimestepSpacing::Linspace), 3).expect("schedule");
        assert_eq!(linspace.timesteps(), [999.0, 499.5, 0.0]);
        assert_eq!(*trailing.sigmas.last().expect("sigma"), 0.0);
        assert!(
            (trailing.sigmas[0] - 14.6146).abs() < 1e-3,
            "{}",
            trailing.sigmas[0]
        );
        assert!(EulerAncestral::new(&config(TimestepSpacing::Trailing), 0).is_err());
    }

    #[test]
    fn interpolation_is_numpys() {
        assert_eq!(interp(0.5, &[0.0, 2.0]), 1.0);
        assert_eq!(interp(-1.0, &[3.0, 4.0]), 3.0);
        assert_eq!(interp(9.0, &[3.0, 4.0]), 4.0);
    }
}
