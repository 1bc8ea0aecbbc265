//! Dead-training detection (seed S3's Perceiver incident: a loss that sat flat for a whole run while every number
//! looked plausible). Over a window of N consecutive steps, training is flagged dead when
//! - the **loss has not moved**: its range over the window is at most 1e-4 × max(1, |mean|) — a collapsed model
//!   scores every batch alike (typically ln B), however the batches differ; or
//! - the **gradient norm is ~0** (below 1e-8) on every step of the window; or
//! - the **parameters do not change**: every step's update is below 1e-9 of the parameters' norm (a learning
//!   rate of 0, frozen parameters, a schedule stuck at zero).

use std::collections::VecDeque;

/// Watches the steps of a run.
#[derive(Debug, Clone)]
pub struct DeadWatch {
    window: usize,
    losses: VecDeque<f64>,
    quiet_gradients: usize,
    still_parameters: usize,
}

impl DeadWatch {
    /// A watch over windows of `window` steps (0 turns it off).
    pub fn new(window: usize) -> DeadWatch {
        DeadWatch {
            window,
            losses: VecDeque::new(),
            quiet_gradients: 0,
            still_parameters: 0,
        }
    }

    /// Observe one step: its loss, gradient norm and relative update size ‖Δθ‖ / ‖θ‖. Returns why training looks
    /// dead when it does.
    pub fn observe(&mut self, loss: f64, grad_norm: f64, relative_update: f64) -> Option<String> {
        if self.window == 0 {
            return None;
        }
        self.losses.push_back(loss);
        if self.losses.len() > self.window {
            self.losses.pop_front();
        }
        self.quiet_gradients = if grad_norm < 1e-8 {
            self.quiet_gradients + 1
        } else {
            0
        };
        self.still_parameters = if relative_update < 1e-9 {
            self.still_parameters + 1
        } else {
            0
        };
        let n = self.window;
        if self.still_parameters >= n {
            return Some(format!(
                "the parameters have not changed for {n} steps (relative update < 1e-9: is the learning rate 0?)"
            ));
        }
        if self.quiet_gradients >= n {
            return Some(format!(
                "the gradient norm has been ~0 (< 1e-8) for {n} steps"
            ));
        }
        if self.losses.len() == n {
            let (lo, hi) = self
                .losses
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                });
            let mean = self.losses.iter().sum::<f64>() / n as f64;
            if hi - lo <= 1e-4 * mean.abs().max(1.0) {
                return Some(format!(
                    "the loss has not moved for {n} steps (stuck at {mean:.6}, range {:.2e})",
                    hi - lo
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::DeadWatch;

    #[test]
    fn flat_loss_zero_gradients_and_still_parameters_are_flagged() {
        let mut w = DeadWatch::new(5);
        assert!((0..4).all(|_| w.observe(2.0794, 0.3, 1e-3).is_none()));
        assert!(
            w.observe(2.0794, 0.3, 1e-3)
                .unwrap()
                .contains("loss has not moved")
        );
        let mut w = DeadWatch::new(3);
        let flagged: Vec<_> = (0..3)
            .map(|i| w.observe(1.0 + i as f64, 0.0, 1e-3))
            .collect();
        assert!(flagged[2].as_ref().unwrap().contains("gradient norm"));
        let mut w = DeadWatch::new(3);
        let flagged: Vec<_> = (0..3)
            .map(|i| w.observe(1.0 + i as f64, 0.5, 0.0))
            .collect();
        assert!(flagged[2].as_ref().unwrap().contains("learning rate"));
        let mut w = DeadWatch::new(3);
        assert!((0..20).all(|i| w.observe(3.0 - 0.1 * i as f64, 0.5, 1e-3).is_none()));
        assert!((0..20).all(|_| DeadWatch::new(0).observe(1.0, 0.0, 0.0).is_none()));
    }
}
