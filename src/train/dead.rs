//! Dead-training detection (seed 003's Perceiver incident: a loss that sat flat for a whole run while every number
//! looked plausible). Dead means **no learning**, never convergence: over a window of N consecutive steps, training
//! is flagged dead when
//! - the **loss has not moved and has not left its starting value**: its range over the window is at most
//!   1e-4 × max(1, |mean|) *and* the window's mean is within a tenth of max(1, |start|) of the first step's loss — a
//!   collapsed model scores every batch alike (typically ln B for InfoNCE) from the start; a loss that fell to near
//!   its minimum and stays there has learned and is not dead;
//! - the **gradient norm is ~0** (below 1e-8) on every step of the window while the loss is still **high**, i.e. has
//!   not fallen by a tenth of max(1, |start|) from the first step's loss; or
//! - the **parameters do not change**: every step's update is below 1e-9 of the parameters' norm (a learning
//!   rate of 0, frozen parameters, a schedule stuck at zero).

use std::collections::VecDeque;

/// Watches the steps of a run.
#[derive(Debug, Clone)]
pub struct DeadWatch {
    window: usize,
    start: Option<f64>,
    losses: VecDeque<f64>,
    quiet_gradients: usize,
    still_parameters: usize,
}

impl DeadWatch {
    /// A watch over windows of `window` steps (0 turns it off).
    pub fn new(window: usize) -> DeadWatch {
        DeadWatch {
            window,
            start: None,
            losses: VecDeque::new(),
            quiet_gradients: 0,
            still_parameters: 0,
        }
    }

    /// Whether `loss` is still near the first step's loss (no learning shows in it).
    fn near_start(&self, loss: f64) -> bool {
        self.start
            .is_some_and(|start| start - loss < 0.1 * start.abs().max(1.0))
    }

    /// Observe one step: its loss, gradient norm and relative update size ‖Δθ‖ / ‖θ‖. Returns why training looks
    /// dead when it does.
    pub fn observe(&mut self, loss: f64, grad_norm: f64, relative_update: f64) -> Option<String> {
        if self.window == 0 {
            return None;
        }
        self.start.get_or_insert(loss);
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
        if self.quiet_gradients >= n && self.near_start(loss) {
            return Some(format!(
                "the gradient norm has been ~0 (< 1e-8) for {n} steps while the loss ({loss:.6}) is still near \
                 its start"
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
            if hi - lo <= 1e-4 * mean.abs().max(1.0) && self.near_start(mean) {
                return Some(format!(
                    "the loss has not moved from its start for {n} steps (stuck at {mean:.6}, range {:.2e})",
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
            .map(|i| w.observe(2.0 + 0.01 * i as f64, 0.0, 1e-3))
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

    /// The case: an InfoNCE run whose loss fell from ln 32 to 0.0002 and sits there, with tiny gradients,
    /// has converged and is not dead; nor is a SANW loss that went from −2 to −12 and stays.
    #[test]
    fn a_converged_run_is_not_dead() {
        let mut w = DeadWatch::new(50);
        for step in 0..150 {
            let loss = if step < 60 {
                32f64.ln() * (1.0 - step as f64 / 60.0) + 2e-4
            } else {
                2e-4 + 1e-9 * (step % 3) as f64
            };
            let grad = if step < 60 { 0.5 } else { 1e-9 };
            assert_eq!(w.observe(loss, grad, 1e-4), None, "step {step}");
        }
        let mut w = DeadWatch::new(20);
        for step in 0..100 {
            let loss = if step < 30 {
                -2.0 - step as f64 / 3.0
            } else {
                -12.0
            };
            assert_eq!(w.observe(loss, 1e-9, 1e-4), None, "step {step}");
        }
    }
}
