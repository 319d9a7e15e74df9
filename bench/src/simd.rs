//! The crate's only `unsafe` code: SIMD kernels and the one raw-pointer library call.
//!
//! - FMA kernels for the peak-FLOPS figures ([`fma_f64`], [`fma_f32`]): [`CHAINS`] independent
//!   vector accumulators, each stepped `x ← x·m + a`, so the FMA units never wait on a result
//!   (4-cycle latency × 2 pipes needs ≥ 8 chains in flight).
//! - STREAM kernels with non-temporal stores ([`copy`], [`scale`], [`add`], [`triad`]): the
//!   destination is written around the caches, so no read-for-ownership doubles the traffic.
//! - [`dgemm`]: the `gemm` crate's entry point takes raw pointers.
//!
//! Every kernel is safe to call: a kernel that needs a CPU feature re-checks it at run time
//! (`is_x86_feature_detected!`, cached by std) before the `unsafe` call, and the slices'
//! lengths are checked before any pointer is formed. Each `unsafe` block says why it is sound.

#![allow(unsafe_code)]

use std::hint::black_box;

/// Independent accumulator chains per kernel.
pub const CHAINS: usize = 12;

/// Iterations per kernel call beyond which the f32 checksum would stop being exact: every
/// accumulator must stay below 2^24 (the f32 mantissa) so `j + iters` is represented exactly.
pub const MAX_ITERS_F32: u64 = (1 << 24) - 2 * CHAINS as u64;

/// An instruction set the FMA kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 512-bit vectors, fused multiply-add (x86-64 with AVX-512F).
    Avx512f,
    /// 256-bit vectors, fused multiply-add (x86-64 with AVX2 and FMA).
    Avx2Fma,
    /// 128-bit vectors, separate multiply and add (every x86-64).
    Sse2,
    /// 128-bit vectors, fused multiply-add (every aarch64).
    Neon,
    /// Plain scalar code, separate multiply and add (anything else).
    Scalar,
}

impl Isa {
    /// The widest instruction set this CPU has, detected at run time.
    pub fn detect() -> Isa {
        Isa::all()
            .into_iter()
            .find(|isa| isa.available())
            .unwrap_or(Isa::Scalar)
    }

    /// Every instruction set, widest first.
    pub fn all() -> [Isa; 5] {
        [Isa::Avx512f, Isa::Avx2Fma, Isa::Sse2, Isa::Neon, Isa::Scalar]
    }

    /// True when this CPU can run the kernels for `self`.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512f => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => true,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            Isa::Scalar => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Short name, as the report shows it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512f => "avx512f",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Sse2 => "sse2",
            Isa::Neon => "neon",
            Isa::Scalar => "scalar",
        }
    }

    /// The CPU features the kernels use.
    pub fn features(self) -> Vec<String> {
        let list: &[&str] = match self {
            Isa::Avx512f => &["avx512f"],
            Isa::Avx2Fma => &["avx2", "fma"],
            Isa::Sse2 => &["sse2"],
            Isa::Neon => &["neon"],
            Isa::Scalar => &[],
        };
        list.iter().map(|s| s.to_string()).collect()
    }

    /// f64 lanes per vector.
    pub fn lanes_f64(self) -> u64 {
        match self {
            Isa::Avx512f => 8,
            Isa::Avx2Fma => 4,
            Isa::Sse2 | Isa::Neon => 2,
            Isa::Scalar => 1,
        }
    }

    /// f32 lanes per vector.
    pub fn lanes_f32(self) -> u64 {
        match self {
            Isa::Scalar => 1,
            other => other.lanes_f64() * 2,
        }
    }

    /// Floating-point operations one kernel call of `iters` iterations performs (a fused or
    /// separate multiply-add counts two).
    pub fn flops(self, iters: u64, single: bool) -> f64 {
        let lanes = if single {
            self.lanes_f32()
        } else {
            self.lanes_f64()
        };
        2.0 * (iters as f64) * (CHAINS as f64) * (lanes as f64)
    }

    /// What [`fma_f64`] / [`fma_f32`] must return for `iters` iterations: chain `j` starts at
    /// `j` and gains `a = 1` per step (with `m = 1`), in every lane.
    pub fn expected_checksum(self, iters: u64, single: bool) -> f64 {
        let lanes = if single {
            self.lanes_f32()
        } else {
            self.lanes_f64()
        };
        let per_lane: u64 = (0..CHAINS as u64).map(|j| j + iters).sum();
        (per_lane * lanes) as f64
    }
}

/// Runs the f64 FMA kernel for `iters` iterations and returns the sum of every lane of every
/// accumulator (see [`Isa::expected_checksum`]); `None` when this CPU lacks `isa`.
pub fn fma_f64(isa: Isa, iters: u64) -> Option<f64> {
    // Opaque to the optimiser: it cannot fold x·1 + 1 or know the trip count.
    let (m, a, iters) = (black_box(1.0f64), black_box(1.0f64), black_box(iters));
    let sum = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512f if isa.available() => {
            // SAFETY: AVX-512F was detected at run time by `available()` just above.
            unsafe { x86::fma_f64_avx512(iters, m, a) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma if isa.available() => {
            // SAFETY: AVX2 and FMA were detected at run time by `available()` just above.
            unsafe { x86::fma_f64_avx2(iters, m, a) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => {
            // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
            unsafe { x86::fma_f64_sse2(iters, m, a) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => arm::fma_f64_neon(iters, m, a),
        Isa::Scalar => scalar_f64(iters, m, a),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(black_box(sum))
}

/// The f32 twin of [`fma_f64`]; `iters` must not exceed [`MAX_ITERS_F32`] (else `None`).
pub fn fma_f32(isa: Isa, iters: u64) -> Option<f64> {
    if iters > MAX_ITERS_F32 {
        return None;
    }
    let (m, a, iters) = (black_box(1.0f32), black_box(1.0f32), black_box(iters));
    let sum = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512f if isa.available() => {
            // SAFETY: AVX-512F was detected at run time by `available()` just above.
            unsafe { x86::fma_f32_avx512(iters, m, a) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma if isa.available() => {
            // SAFETY: AVX2 and FMA were detected at run time by `available()` just above.
            unsafe { x86::fma_f32_avx2(iters, m, a) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => {
            // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
            unsafe { x86::fma_f32_sse2(iters, m, a) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => arm::fma_f32_neon(iters, m, a),
        Isa::Scalar => scalar_f32(iters, m, a),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(black_box(sum))
}

fn scalar_f64(iters: u64, m: f64, a: f64) -> f64 {
    let mut acc = [0.0f64; CHAINS];
    for (j, x) in acc.iter_mut().enumerate() {
        *x = j as f64;
    }
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * m + a;
        }
    }
    acc.iter().sum()
}

fn scalar_f32(iters: u64, m: f32, a: f32) -> f64 {
    let mut acc = [0.0f32; CHAINS];
    for (j, x) in acc.iter_mut().enumerate() {
        *x = j as f32;
    }
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * m + a;
        }
    }
    acc.iter().map(|x| f64::from(*x)).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::CHAINS;

    #[target_feature(enable = "avx512f")]
    pub(super) fn fma_f64_avx512(iters: u64, m: f64, a: f64) -> f64 {
        let (vm, va) = (_mm512_set1_pd(m), _mm512_set1_pd(a));
        let mut acc = [vm; CHAINS];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm512_set1_pd(j as f64);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_pd(*x, vm, va);
            }
        }
        let mut sum = 0.0;
        for x in acc {
            let mut lanes = [0.0f64; 8];
            // SAFETY: `lanes` holds exactly the 8 f64 an unaligned 512-bit store writes.
            unsafe { _mm512_storeu_pd(lanes.as_mut_ptr(), x) };
            sum += lanes.iter().sum::<f64>();
        }
        sum
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn fma_f32_avx512(iters: u64, m: f32, a: f32) -> f64 {
        let (vm, va) = (_mm512_set1_ps(m), _mm512_set1_ps(a));
        let mut acc = [vm; CHAINS];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm512_set1_ps(j as f32);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, vm, va);
            }
        }
        let mut sum = 0.0;
        for x in acc {
            let mut lanes = [0.0f32; 16];
            // SAFETY: `lanes` holds exactly the 16 f32 an unaligned 512-bit store writes.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), x) };
            sum += lanes.iter().map(|l| f64::from(*l)).sum::<f64>();
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma_f64_avx2(iters: u64, m: f64, a: f64) -> f64 {
        let (vm, va) = (_mm256_set1_pd(m), _mm256_set1_pd(a));
        let mut acc = [vm; CHAINS];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm256_set1_pd(j as f64);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_pd(*x, vm, va);
            }
        }
        let mut sum = 0.0;
        for x in acc {
            let mut lanes = [0.0f64; 4];
            // SAFETY: `lanes` holds exactly the 4 f64 an unaligned 256-bit store writes.
            unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), x) };
            sum += lanes.iter().sum::<f64>();
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma_f32_avx2(iters: u64, m: f32, a: f32) -> f64 {
        let (vm, va) = (_mm256_set1_ps(m), _mm256_set1_ps(a));
        let mut acc = [vm; CHAINS];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm256_set1_ps(j as f32);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, vm, va);
            }
        }
        let mut sum = 0.0;
        for x in acc {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds exactly the 8 f32 an unaligned 256-bit store writes.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), x) };
            sum += lanes.iter().map(|l| f64::from(*l)).sum::<f64>();
        }
        sum
    }

    /// SSE2 has no FMA: a multiply and an add per step (still two flops).
    #[target_feature(enable = "sse2")]
    pub(super) fn fma_f64_sse2(iters: u64, m: f64, a: f64) -> f64 {
        let (vm, va) = (_mm_set1_pd(m), _mm_set1_pd(a));
        let mut acc = [vm; CHAINS];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm_set1_pd(j as f64);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm_add_pd(_mm_mul_pd(*x, vm), va);
            }
        }
        let mut sum = 0.0;
        for x in acc {
            let mut lanes = [0.0f64; 2];
            // SAFETY: `lanes` holds exactly the 2 f64 an unaligned 128-bit store writes.
            unsafe { _mm_storeu_pd(lanes.as_mut_ptr(), x) };
            sum += lanes.iter().sum::<f64>();
        }
        sum
    }

    #[target_feature(enable = "sse2")]
    pub(super) fn fma_f32_sse2(iters: u64, m: f32, a: f32) -> f64 {
        let (vm, va) = (_mm_set1_ps(m), _mm_set1_ps(a));
        let mut acc = [vm; CHAINS];
        for (j, x) in acc.iter_mut().enumerate() {
            *x = _mm_set1_ps(j as f32);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm_add_ps(_mm_mul_ps(*x, vm), va);
            }
        }
        let mut sum = 0.0;
        for x in acc {
            let mut lanes = [0.0f32; 4];
            // SAFETY: `lanes` holds exactly the 4 f32 an unaligned 128-bit store writes.
            unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), x) };
            sum += lanes.iter().map(|l| f64::from(*l)).sum::<f64>();
        }
        sum
    }

    /// `dst[i] = f(x[i], y[i])` four at a time with non-temporal stores; scalar head (until
    /// `dst` is 32-byte aligned) and tail. All three slices have the same length.
    macro_rules! nt_avx {
        ($name:ident, |$x:ident, $y:ident, $s:ident| $vec:expr, |$xs:ident, $ys:ident, $ss:ident| $scalar:expr) => {
            #[target_feature(enable = "avx")]
            pub(super) fn $name(dst: &mut [f64], x: &[f64], y: &[f64], s: f64) {
                let n = dst.len().min(x.len()).min(y.len());
                let head = dst.as_ptr().align_offset(32).min(n);
                let $ss = s;
                for i in 0..head {
                    let ($xs, $ys) = (x[i], y[i]);
                    dst[i] = $scalar;
                }
                let $s = _mm256_set1_pd(s);
                let mut i = head;
                while i + 8 <= n {
                    // SAFETY: i + 8 <= n, so the two 4-element loads from `x` and `y` and the
                    // two 4-element stores to `dst` stay in bounds; `dst + head` is 32-byte
                    // aligned and i - head is a multiple of 4, as `_mm256_stream_pd` needs.
                    unsafe {
                        let $x = _mm256_loadu_pd(x.as_ptr().add(i));
                        let $y = _mm256_loadu_pd(y.as_ptr().add(i));
                        _mm256_stream_pd(dst.as_mut_ptr().add(i), $vec);
                        let $x = _mm256_loadu_pd(x.as_ptr().add(i + 4));
                        let $y = _mm256_loadu_pd(y.as_ptr().add(i + 4));
                        _mm256_stream_pd(dst.as_mut_ptr().add(i + 4), $vec);
                    }
                    i += 8;
                }
                for i in i..n {
                    let ($xs, $ys) = (x[i], y[i]);
                    dst[i] = $scalar;
                }
                // Make the streamed stores visible before the caller reads `dst` again.
                _mm_sfence();
            }
        };
    }

    /// The AVX-512 twin of `nt_avx!`: one full 64-byte cache line per store, which the
    /// write-combining buffers handle best.
    macro_rules! nt_avx512 {
        ($name:ident, |$x:ident, $y:ident, $s:ident| $vec:expr, |$xs:ident, $ys:ident, $ss:ident| $scalar:expr) => {
            #[target_feature(enable = "avx512f")]
            pub(super) fn $name(dst: &mut [f64], x: &[f64], y: &[f64], s: f64) {
                let n = dst.len().min(x.len()).min(y.len());
                let head = dst.as_ptr().align_offset(64).min(n);
                let $ss = s;
                for i in 0..head {
                    let ($xs, $ys) = (x[i], y[i]);
                    dst[i] = $scalar;
                }
                let $s = _mm512_set1_pd(s);
                let mut i = head;
                while i + 16 <= n {
                    // SAFETY: i + 16 <= n, so the two 8-element loads from `x` and `y` and the
                    // two 8-element stores to `dst` stay in bounds; `dst + head` is 64-byte
                    // aligned and i - head is a multiple of 8, as `_mm512_stream_pd` needs.
                    unsafe {
                        let $x = _mm512_loadu_pd(x.as_ptr().add(i));
                        let $y = _mm512_loadu_pd(y.as_ptr().add(i));
                        _mm512_stream_pd(dst.as_mut_ptr().add(i), $vec);
                        let $x = _mm512_loadu_pd(x.as_ptr().add(i + 8));
                        let $y = _mm512_loadu_pd(y.as_ptr().add(i + 8));
                        _mm512_stream_pd(dst.as_mut_ptr().add(i + 8), $vec);
                    }
                    i += 16;
                }
                for i in i..n {
                    let ($xs, $ys) = (x[i], y[i]);
                    dst[i] = $scalar;
                }
                _mm_sfence();
            }
        };
    }

    nt_avx512!(copy_avx512, |x, _y, _s| x, |xs, _ys, _ss| xs);
    nt_avx512!(scale_avx512, |x, _y, s| _mm512_mul_pd(s, x), |xs, _ys, ss| ss
        * xs);
    nt_avx512!(add_avx512, |x, y, _s| _mm512_add_pd(x, y), |xs, ys, _ss| xs + ys);
    nt_avx512!(
        triad_avx512,
        |x, y, s| _mm512_add_pd(x, _mm512_mul_pd(s, y)),
        |xs, ys, ss| xs + ss * ys
    );

    nt_avx!(copy_avx, |x, _y, _s| x, |xs, _ys, _ss| xs);
    nt_avx!(scale_avx, |x, _y, s| _mm256_mul_pd(s, x), |xs, _ys, ss| ss * xs);
    nt_avx!(add_avx, |x, y, _s| _mm256_add_pd(x, y), |xs, ys, _ss| xs + ys);
    nt_avx!(
        triad_avx,
        |x, y, s| _mm256_add_pd(x, _mm256_mul_pd(s, y)),
        |xs, ys, ss| xs + ss * ys
    );
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::CHAINS;

    // The intrinsics are safe functions in newer Rust and unsafe in older: allow both.
    #[allow(unused_unsafe)]
    pub(super) fn fma_f64_neon(iters: u64, m: f64, a: f64) -> f64 {
        // SAFETY: NEON is part of the aarch64 baseline, so these intrinsics are always
        // available; the stores write exactly the two lanes `lanes` holds.
        unsafe {
            let (vm, va) = (vdupq_n_f64(m), vdupq_n_f64(a));
            let mut acc = [vm; CHAINS];
            for (j, x) in acc.iter_mut().enumerate() {
                *x = vdupq_n_f64(j as f64);
            }
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    // vfmaq_f64(a, b, c) = a + b·c
                    *x = vfmaq_f64(va, *x, vm);
                }
            }
            let mut sum = 0.0;
            for x in acc {
                let mut lanes = [0.0f64; 2];
                vst1q_f64(lanes.as_mut_ptr(), x);
                sum += lanes.iter().sum::<f64>();
            }
            sum
        }
    }

    // The intrinsics are safe functions in newer Rust and unsafe in older: allow both.
    #[allow(unused_unsafe)]
    pub(super) fn fma_f32_neon(iters: u64, m: f32, a: f32) -> f64 {
        // SAFETY: as in `fma_f64_neon`; the stores write exactly the four lanes `lanes` holds.
        unsafe {
            let (vm, va) = (vdupq_n_f32(m), vdupq_n_f32(a));
            let mut acc = [vm; CHAINS];
            for (j, x) in acc.iter_mut().enumerate() {
                *x = vdupq_n_f32(j as f32);
            }
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = vfmaq_f32(va, *x, vm);
                }
            }
            let mut sum = 0.0;
            for x in acc {
                let mut lanes = [0.0f32; 4];
                vst1q_f32(lanes.as_mut_ptr(), x);
                sum += lanes.iter().map(|l| f64::from(*l)).sum::<f64>();
            }
            sum
        }
    }
}

/// True when [`copy`], [`scale`], [`add`] and [`triad`] use non-temporal stores on this CPU
/// (512-bit with AVX-512F, else 256-bit with AVX).
pub fn streaming_stores() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The CPU features the STREAM kernels use here ("avx512f" or "avx"; none for plain loops).
pub fn stream_features() -> Vec<String> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return vec!["avx512f".to_owned()];
        }
        if std::arch::is_x86_feature_detected!("avx") {
            return vec!["avx".to_owned()];
        }
    }
    Vec::new()
}

/// STREAM copy: `c = a`.
pub fn copy(c: &mut [f64], a: &[f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected at run time just above.
        unsafe { x86::copy_avx512(c, a, a, 0.0) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if streaming_stores() {
        // SAFETY: AVX was detected at run time by `streaming_stores()` just above.
        unsafe { x86::copy_avx(c, a, a, 0.0) };
        return;
    }
    c.copy_from_slice(&a[..c.len()]);
}

/// STREAM scale: `b = s·c`.
pub fn scale(b: &mut [f64], c: &[f64], s: f64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected at run time just above.
        unsafe { x86::scale_avx512(b, c, c, s) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if streaming_stores() {
        // SAFETY: AVX was detected at run time by `streaming_stores()` just above.
        unsafe { x86::scale_avx(b, c, c, s) };
        return;
    }
    for (b, c) in b.iter_mut().zip(c) {
        *b = s * c;
    }
}

/// STREAM add: `c = a + b`.
pub fn add(c: &mut [f64], a: &[f64], b: &[f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected at run time just above.
        unsafe { x86::add_avx512(c, a, b, 0.0) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if streaming_stores() {
        // SAFETY: AVX was detected at run time by `streaming_stores()` just above.
        unsafe { x86::add_avx(c, a, b, 0.0) };
        return;
    }
    for ((c, a), b) in c.iter_mut().zip(a).zip(b) {
        *c = a + b;
    }
}

/// STREAM triad: `a = b + s·c`.
pub fn triad(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected at run time just above.
        unsafe { x86::triad_avx512(a, b, c, s) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if streaming_stores() {
        // SAFETY: AVX was detected at run time by `streaming_stores()` just above.
        unsafe { x86::triad_avx(a, b, c, s) };
        return;
    }
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = b + s * c;
    }
}

/// `c = a·b` for `n × n` row-major matrices with the `gemm` crate on `threads` threads (its
/// rayon pool). `false` when a slice is not `n × n` long (nothing is computed then).
pub fn dgemm(n: usize, a: &[f64], b: &[f64], c: &mut [f64], threads: usize) -> bool {
    let Some(len) = n.checked_mul(n) else {
        return false;
    };
    let Ok(stride) = isize::try_from(n) else {
        return false;
    };
    if a.len() != len || b.len() != len || c.len() != len {
        return false;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: all three pointers come from slices of exactly n·n elements, and with column
    // stride 1 and row stride n every index (i·n + j, i, j < n) stays inside them. `c` is a
    // unique borrow, so it aliases neither `a` nor `b`. With read_dst = false the old
    // contents of `c` are not read (alpha is ignored): c = 1.0 · a·b.
    unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            stride,
            false,
            a.as_ptr(),
            1,
            stride,
            b.as_ptr(),
            1,
            stride,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_kernel_returns_its_analytic_checksum() {
        for isa in Isa::all().into_iter().filter(|i| i.available()) {
            for iters in [0, 1, 7, 1000, 100_003] {
                let got = fma_f64(isa, iters);
                assert_eq!(
                    got,
                    Some(isa.expected_checksum(iters, false)),
                    "{isa:?} f64 {iters}"
                );
                let got = fma_f32(isa, iters);
                assert_eq!(
                    got,
                    Some(isa.expected_checksum(iters, true)),
                    "{isa:?} f32 {iters}"
                );
            }
        }
    }

    #[test]
    fn f32_checksum_is_exact_up_to_its_limit_and_refused_beyond() {
        let isa = Isa::detect();
        assert_eq!(
            fma_f32(isa, MAX_ITERS_F32),
            Some(isa.expected_checksum(MAX_ITERS_F32, true))
        );
        assert_eq!(fma_f32(isa, MAX_ITERS_F32 + 1), None);
    }

    #[test]
    fn unavailable_isa_is_refused_not_faked() {
        for isa in Isa::all().into_iter().filter(|i| !i.available()) {
            assert_eq!(fma_f64(isa, 10), None, "{isa:?}");
        }
    }

    #[test]
    fn stream_kernels_match_scalar_code_at_every_alignment() {
        for offset in 0..4 {
            for n in [0, 1, 5, 8, 9, 31, 1000] {
                let a: Vec<f64> = (0..n + offset).map(|i| i as f64).collect();
                let b: Vec<f64> = (0..n + offset).map(|i| 2.0 * i as f64 + 1.0).collect();
                let (a, b) = (&a[offset..], &b[offset..]);
                let mut buf = vec![0.0; n + offset];
                let dst = &mut buf[offset..];
                copy(dst, a);
                assert_eq!(dst, a);
                scale(dst, a, 3.0);
                assert!(dst.iter().zip(a).all(|(d, a)| *d == 3.0 * a));
                add(dst, a, b);
                assert!(dst.iter().zip(a.iter().zip(b)).all(|(d, (a, b))| *d == a + b));
                triad(dst, a, b, 3.0);
                assert!(dst
                    .iter()
                    .zip(a.iter().zip(b))
                    .all(|(d, (a, b))| *d == a + 3.0 * b));
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx_stream_kernels_match_scalar_code_too() {
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        for offset in 0..4 {
            let n = 1003;
            let a: Vec<f64> = (0..n + offset).map(|i| i as f64).collect();
            let b: Vec<f64> = (0..n + offset).map(|i| 2.0 * i as f64 + 1.0).collect();
            let (a, b) = (&a[offset..], &b[offset..]);
            let mut buf = vec![0.0; n + offset];
            let dst = &mut buf[offset..];
            // SAFETY: AVX was detected at run time just above.
            unsafe { x86::triad_avx(dst, a, b, 3.0) };
            assert!(dst
                .iter()
                .zip(a.iter().zip(b))
                .all(|(d, (a, b))| *d == a + 3.0 * b));
            // SAFETY: as above.
            unsafe { x86::copy_avx(dst, b, b, 0.0) };
            assert_eq!(dst, b);
        }
    }

    #[test]
    fn dgemm_multiplies_and_refuses_wrong_shapes() {
        let n = 3;
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let id = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let mut c = [0.0; 9];
        assert!(dgemm(n, &a, &id, &mut c, 1));
        assert_eq!(c, a);
        let mut c = [0.0; 9];
        assert!(dgemm(n, &a, &a, &mut c, 2));
        assert_eq!(c[0], 1.0 + 8.0 + 21.0);
        assert_eq!(c[5], 4.0 * 3.0 + 5.0 * 6.0 + 6.0 * 9.0);
        assert!(!dgemm(4, &a, &a, &mut c, 1));
    }
}
