//! Open-loop arrivals: a Poisson process, so gaps between calls are exponential with
//! mean `1 / rate`. Arrival times are absolute offsets from the start, so a late wake-up
//! never shifts the calls that follow.

use std::time::Duration;

use rand::Rng;

/// The offsets, from the start of the load, at which calls arrive.
#[derive(Debug)]
pub struct Arrivals<R> {
    rate: f64,
    rng: R,
    at: f64,
}

impl<R: Rng> Arrivals<R> {
    /// Arrivals at `rate` calls per second on average; `rate` must be positive.
    pub fn new(rate: f64, rng: R) -> Self {
        Self { rate, rng, at: 0.0 }
    }

    /// One exponential gap, in seconds, by inversion: `1 - u` lies in (0, 1], so the
    /// logarithm is finite.
    pub fn gap_secs(&mut self) -> f64 {
        let u: f64 = self.rng.random();
        -(1.0 - u).ln() / self.rate
    }
}

impl<R: Rng> Iterator for Arrivals<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.at += self.gap_secs();
        Some(Duration::from_secs_f64(self.at))
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn gaps_average_the_inverse_of_the_rate() {
        let mut arrivals = Arrivals::new(250.0, StdRng::seed_from_u64(7));
        let n = 200_000;
        let gaps: Vec<f64> = (0..n).map(|_| arrivals.gap_secs()).collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        let variance = gaps.iter().map(|gap| (gap - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean * 250.0 - 1.0).abs() < 0.01, "mean gap {mean}");
        // Exponential: the standard deviation equals the mean.
        assert!((variance.sqrt() / mean - 1.0).abs() < 0.02, "coefficient of variation");
        assert!(gaps.iter().all(|gap| gap.is_finite() && *gap >= 0.0));
    }

    #[test]
    fn arrivals_are_increasing_offsets_at_the_rate() {
        let arrivals: Vec<Duration> = Arrivals::new(100.0, StdRng::seed_from_u64(3)).take(10_000).collect();
        assert!(arrivals.windows(2).all(|pair| pair[0] <= pair[1]));
        let last = arrivals.last().unwrap().as_secs_f64();
        assert!((last - 100.0).abs() < 5.0, "10000 arrivals at 100/s took {last} s");
    }
}
