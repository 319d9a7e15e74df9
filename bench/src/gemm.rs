//! Dense f64 matrix multiply (GEMM) with the `gemm` crate: what real dense code reaches.
//!
//! The matrices hold small integers, so every entry of the product is an integer well inside
//! f64's exact range whatever order the library sums in; a sample of entries is recomputed
//! naively and must match exactly.

use std::time::{Duration, Instant};

use crate::report::GemmSection;
use crate::simd;
use crate::stats::{giga_per_second, summarize, Conditions, Figure};
use crate::Ctx;

/// Measures GEMM GFLOP/s at n = 1024 (quick: 512).
pub fn measure(ctx: &Ctx, progress: &mut dyn FnMut(&str)) -> GemmSection {
    let n = if ctx.quick { 512 } else { 1024 };
    let (warmup, repeats, cap) = if ctx.quick {
        (1, 5, Duration::from_millis(600))
    } else {
        (2, 10, Duration::from_secs(3))
    };
    progress(&format!("gemm: f64 n = {n}, {} thread(s)", ctx.threads));
    let mut notes = Vec::new();
    let f64 = match dgemm_figure(n, ctx.threads, warmup, repeats, cap) {
        Ok(f) => Some(f),
        Err(why) => {
            notes.push(why);
            None
        }
    };
    GemmSection {
        library: "gemm 0.19 (rayon)".to_owned(),
        n,
        f64,
        notes,
    }
}

fn entry_a(n: usize, i: usize, k: usize) -> f64 {
    ((i * 7 + k * 3 + n) % 17) as f64 - 8.0
}

fn entry_b(n: usize, k: usize, j: usize) -> f64 {
    ((k * 5 + j * 11 + n) % 13) as f64 - 6.0
}

/// `warmup` untimed and up to `repeats` timed products (fewer if `cap` runs out, at least one).
pub fn dgemm_figure(
    n: usize,
    threads: usize,
    warmup: u32,
    repeats: u32,
    cap: Duration,
) -> Result<Figure, String> {
    let a: Vec<f64> = (0..n * n).map(|x| entry_a(n, x / n, x % n)).collect();
    let b: Vec<f64> = (0..n * n).map(|x| entry_b(n, x / n, x % n)).collect();
    let mut c = vec![0.0; n * n];
    let flops = 2.0 * (n as f64).powi(3);
    let start = Instant::now();
    let mut samples = Vec::new();
    for round in 0..warmup + repeats {
        c.fill(f64::NAN);
        let t = Instant::now();
        if !simd::dgemm(n, &a, &b, &mut c, threads) {
            return Err(format!("gemm refused n = {n}"));
        }
        let took = t.elapsed();
        verify(n, &a, &b, &c)?;
        if round >= warmup {
            samples.push(giga_per_second(flops, took));
            if start.elapsed() > cap {
                break;
            }
        }
    }
    let conditions = Conditions {
        threads,
        size: format!("n = {n} (square, row-major)"),
        features: Vec::new(),
        note: Some("the gemm crate picks its own kernels; rayon threads are not pinned".to_owned()),
    };
    summarize(&samples, "GFLOP/s", conditions).ok_or_else(|| "no GEMM round completed".to_owned())
}

/// Recomputes 16 entries (corners, centre, a spread of others) naively; they must match exactly.
fn verify(n: usize, a: &[f64], b: &[f64], c: &[f64]) -> Result<(), String> {
    let mut points = vec![(0, 0), (n - 1, n - 1), (0, n - 1), (n - 1, 0), (n / 2, n / 3)];
    points.extend((1..12).map(|k| ((k * 97) % n, (k * 389 + 5) % n)));
    for (i, j) in points {
        let want: f64 = (0..n).map(|k| a[i * n + k] * b[k * n + j]).sum();
        let got = c[i * n + j];
        if got != want {
            return Err(format!(
                "GEMM result wrong at ({i}, {j}): {got} instead of {want}; figure withheld"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_figure_is_verified_and_positive() {
        let f = dgemm_figure(96, 2, 1, 3, Duration::from_secs(5)).unwrap();
        assert_eq!(f.repeats, 3);
        assert!(f.median > 0.0 && f.min <= f.max);
    }

    #[test]
    fn a_wrong_product_is_caught() {
        let n = 8;
        let a: Vec<f64> = (0..n * n).map(|x| entry_a(n, x / n, x % n)).collect();
        let b: Vec<f64> = (0..n * n).map(|x| entry_b(n, x / n, x % n)).collect();
        let mut c = vec![0.0; n * n];
        assert!(simd::dgemm(n, &a, &b, &mut c, 1));
        assert!(verify(n, &a, &b, &c).is_ok());
        c[n * n - 1] += 1.0;
        assert!(verify(n, &a, &b, &c).is_err());
    }
}
