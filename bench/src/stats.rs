//! Repeats and their summary: every figure is a median with its spread, never one sample.
//!
//! A measurement runs `warmup` untimed rounds, then `repeats` timed ones; [`summarize`] turns the
//! timed samples into a [`Figure`] (median, min, max, coefficient of variation).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One measured figure: the median of `repeats` samples and their spread, in `unit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Coefficient of variation: sample standard deviation / mean (0 for one sample).
    pub cv: f64,
    pub repeats: u32,
    pub unit: String,
    pub conditions: Conditions,
}

/// What a figure was measured with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// Threads that ran the kernel (each pinned to one CPU when pinning was possible).
    pub threads: usize,
    /// The problem size, in words ("n = 1024", "3 arrays × 128 MiB", …).
    pub size: String,
    /// CPU features the kernel used ("avx512f", "avx2", "fma", …); empty when none apply.
    pub features: Vec<String>,
    /// Anything else a reader needs to compare this figure (e.g. "O_DIRECT").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How many rounds a measurement runs and how long a timed round should last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub warmup: u32,
    pub repeats: u32,
    /// Target duration of one timed round (kernels calibrate their work to it).
    pub round: Duration,
}

impl Plan {
    pub fn rounds(&self) -> u32 {
        self.warmup + self.repeats
    }
}

/// The median, min, max and CV of `samples` as a figure; `None` without a positive, finite
/// sample (a figure is measured or absent, never made up).
pub fn summarize(samples: &[f64], unit: &str, conditions: Conditions) -> Option<Figure> {
    if samples.is_empty() || samples.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let cv = if n > 1 {
        let var = sorted.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        var.sqrt() / mean
    } else {
        0.0
    };
    Some(Figure {
        median,
        min: sorted[0],
        max: sorted[n - 1],
        cv,
        repeats: u32::try_from(n).unwrap_or(u32::MAX),
        unit: unit.to_owned(),
        conditions,
    })
}

/// `amount / time` in units of 10^9 per second (GFLOP/s, GB/s).
pub fn giga_per_second(amount: f64, time: Duration) -> f64 {
    amount / time.as_secs_f64().max(1e-12) / 1e9
}

/// Bytes in binary units, for conditions ("128 MiB").
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_and_cv() {
        let f = summarize(&[3.0, 1.0, 2.0, 10.0], "GB/s", Conditions::default()).unwrap();
        assert_eq!(f.median, 2.5);
        assert_eq!((f.min, f.max, f.repeats), (1.0, 10.0, 4));
        // mean 4, sample variance (1 + 9 + 4 + 36) / 3
        assert!((f.cv - (50.0f64 / 3.0).sqrt() / 4.0).abs() < 1e-12);
        let one = summarize(&[5.0], "x", Conditions::default()).unwrap();
        assert_eq!((one.median, one.cv, one.repeats), (5.0, 0.0, 1));
    }

    #[test]
    fn no_figure_without_real_samples() {
        assert!(summarize(&[], "x", Conditions::default()).is_none());
        assert!(summarize(&[1.0, 0.0], "x", Conditions::default()).is_none());
        assert!(summarize(&[1.0, f64::NAN], "x", Conditions::default()).is_none());
    }

    #[test]
    fn units() {
        assert_eq!(human_bytes(128 << 20), "128 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(giga_per_second(2e9, Duration::from_secs(2)), 1.0);
    }
}
